//! The network service's protocol (`svc_net`, docs/net.md) and its client helpers.
