//! The key-value server of the typed-IPC test (`rt_ipc`): registers its own endpoint with the
//! task that started it, then serves `programs::kv::Kv` with `rt::ipc::Server`. Values live
//! on the heap (`BTreeMap`s); each client (badge) may get one shared buffer for bulk data.
#![no_std]
#![no_main]

extern crate alloc;

use abi::syscall::rights;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use programs::kv::{Kv, Request, Response, BLOB_MAX, BUFFER_MAX};
use rt::ipc::{Cap, Server, SharedBuffer};
use rt::log::{info, warn};
use rt::sys::{self, Message, FOREVER_NS};

rt::entry!(main);

#[derive(Default)]
struct Store {
    values: BTreeMap<u64, u64>,
    blobs: BTreeMap<u64, Vec<u8>>,
    buffers: BTreeMap<u64, SharedBuffer>,
}

impl Store {
    fn handle(&mut self, badge: u64, request: Request) -> Response {
        match request {
            Request::Put { key, value, overwrite } => {
                if !overwrite && self.values.contains_key(&key) {
                    return Response::Exists;
                }
                self.values.insert(key, value);
                Response::Done
            }
            Request::Get { key } => Response::Value { value: self.values.get(&key).copied() },
            Request::OpenBuffer { len } => {
                if self.buffers.contains_key(&badge) {
                    return Response::Exists;
                }
                if len == 0 || len > BUFFER_MAX {
                    return Response::TooLarge;
                }
                let Ok(buffer) = SharedBuffer::create(len as usize) else { return Response::NoMemory };
                // The client may read and write, and pass the capability on, but not destroy
                // the object under our feet.
                let Ok(copy) = buffer.share(rights::READ | rights::WRITE | rights::DUPLICATE) else {
                    return Response::NoMemory;
                };
                self.buffers.insert(badge, buffer);
                Response::Buffer { memory: Cap(copy), len }
            }
            Request::Sum { range } => {
                let Some(buffer) = self.buffers.get(&badge) else { return Response::NoBuffer };
                let mut sum = 0u64;
                match buffer.read_chunks::<256>(range, |bytes| sum += bytes.iter().map(|&b| b as u64).sum::<u64>()) {
                    Ok(()) => Response::Total { sum },
                    Err(_) => Response::OutOfRange,
                }
            }
            Request::Store { key, range } => {
                let Some(buffer) = self.buffers.get(&badge) else { return Response::NoBuffer };
                if range.len > BLOB_MAX {
                    return Response::TooLarge;
                }
                if buffer.check(range).is_err() {
                    return Response::OutOfRange;
                }
                let mut blob = Vec::new();
                if blob.try_reserve_exact(range.len as usize).is_err() {
                    return Response::NoMemory;
                }
                blob.resize(range.len as usize, 0);
                match buffer.read(range.offset, &mut blob) {
                    Ok(()) => {
                        self.blobs.insert(key, blob);
                        Response::Done
                    }
                    Err(_) => Response::OutOfRange,
                }
            }
            Request::Load { key, offset } => {
                let Some(buffer) = self.buffers.get(&badge) else { return Response::NoBuffer };
                let Some(blob) = self.blobs.get(&key) else { return Response::NotFound };
                match buffer.write(offset, blob) {
                    Ok(()) => Response::Loaded { len: blob.len() as u64 },
                    Err(_) => Response::OutOfRange,
                }
            }
        }
    }
}

fn main() -> i32 {
    rt::log::set_prefix("rt_ipc_server");
    let registry = rt::startup_arg() as sys::Handle;
    // Our own endpoint: if we die, it dies with us and our clients get errors, not hangs.
    let service = sys::endpoint_create().expect("endpoint");
    let for_clients = sys::cap_duplicate(service, rights::SEND | rights::GRANT | rights::DUPLICATE, 0)
        .expect("a capability for clients");
    let mut register = Message::new(1, [0; 4]);
    register.cap = Some(for_clients);
    sys::call(registry, &register, FOREVER_NS).expect("register");
    let _ = sys::cap_close(for_clients);
    info!("serving");
    let mut store = Store::default();
    let error = Server::<Kv>::new(service).serve(|badge, request| store.handle(badge, request));
    warn!("stopped: {error:?}");
    1
}
