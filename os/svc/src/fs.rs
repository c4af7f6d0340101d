//! The file-system service's protocol (`svc_fs`, docs/fs.md) and its client helpers.
