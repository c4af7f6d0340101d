#!/bin/sh
# Puts a small populated ext2 image into corpus/image/ as the fuzzer's seed.
set -e
cd "$(dirname "$0")"
tmp=$(mktemp -d)
mkdir -p "$tmp/tree/dir" corpus/image
echo hello > "$tmp/tree/file"
head -c 20000 /dev/zero > "$tmp/tree/dir/big"
ln -s file "$tmp/tree/link"
mke2fs -q -t ext2 -b 1024 -N 32 -F -d "$tmp/tree" corpus/image/seed.img 128k
rm -rf "$tmp"
