//! The name service (docs/services.md): services register their endpoints under their names,
//! clients look names up and get an endpoint capability badged with their own badge (so the
//! service knows who calls). Who may register and look up what is set by init (badge 0), from
//! the manifest; when a service ends, init tells the name service to forget it, and its next
//! incarnation registers again, so later lookups get the new endpoint.
#![no_std]
#![no_main]

extern crate alloc;

use abi::syscall::rights;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use rt::ipc::{Cap, Server};
use rt::log::{info, warn};
use rt::sys::{self, Handle};
use svc::names::{Names, Request, Response};
use svc::Name;

rt::entry!(main);

/// Table limits: a hostile or buggy caller cannot make the service grow without bound.
const CLIENTS_MAX: usize = 64;
const LOOKUPS_MAX: usize = 16;

#[derive(Default)]
struct Rights {
    register: Option<Name>,
    lookup: Vec<Name>,
}

#[derive(Default)]
struct Registry {
    clients: BTreeMap<u64, Rights>,
    endpoints: BTreeMap<Name, Handle>,
}

impl Registry {
    fn handle(&mut self, badge: u64, request: Request) -> Response {
        match request {
            Request::Register { endpoint } => {
                let Some(name) = self.clients.get(&badge).and_then(|r| r.register) else {
                    let _ = sys::cap_close(endpoint.0);
                    return Response::Denied;
                };
                if let Some(old) = self.endpoints.insert(name, endpoint.0) {
                    let _ = sys::cap_close(old);
                }
                info!("{} registered", svc::name_str(&name));
                Response::Done
            }
            Request::Lookup { name } if svc::name_str(&name).contains('@') => self.remote(badge, name),
            Request::Lookup { name } => {
                let allowed = badge == 0 || self.clients.get(&badge).is_some_and(|r| r.lookup.contains(&name));
                if !allowed {
                    return Response::Denied;
                }
                let Some(&endpoint) = self.endpoints.get(&name) else { return Response::NotRegistered };
                match sys::cap_duplicate(endpoint, rights::SEND | rights::GRANT | rights::DUPLICATE, badge) {
                    Ok(copy) => Response::Found { endpoint: Cap(copy) },
                    Err(_) => {
                        // The service is gone and init has not told us yet.
                        let _ = sys::cap_close(endpoint);
                        self.endpoints.remove(&name);
                        Response::NotRegistered
                    }
                }
            }
            Request::Allow { client, name, register } => {
                if badge != 0 || client == 0 {
                    return Response::Denied;
                }
                if !self.clients.contains_key(&client) && self.clients.len() == CLIENTS_MAX {
                    return Response::Full;
                }
                let rights = self.clients.entry(client).or_default();
                if register {
                    rights.register = Some(name);
                } else if !rights.lookup.contains(&name) {
                    if rights.lookup.len() == LOOKUPS_MAX {
                        return Response::Full;
                    }
                    rights.lookup.push(name);
                }
                Response::Done
            }
            Request::Forget { client } => {
                if badge != 0 {
                    return Response::Denied;
                }
                if let Some(name) = self.clients.remove(&client).and_then(|r| r.register) {
                    if let Some(old) = self.endpoints.remove(&name) {
                        let _ = sys::cap_close(old);
                    }
                }
                Response::Done
            }
        }
    }
}

/// How long the soft bus server may take to make a proxy.
const PROXY_TIMEOUT_NS: u64 = 1_000_000_000;

impl Registry {
    /// A remote service `<service>@<device>`: an endpoint made by the soft bus server for
    /// this client, if the client may use the soft bus (docs/softbus/tutti.md).
    fn remote(&mut self, badge: u64, name: Name) -> Response {
        let Some(softbus) = svc::name("softbus") else { return Response::Denied };
        let allowed = badge == 0 || self.clients.get(&badge).is_some_and(|r| r.lookup.contains(&softbus));
        if !allowed {
            return Response::Denied;
        }
        let Some(&endpoint) = self.endpoints.get(&softbus) else { return Response::NotRegistered };
        let server = rt::ipc::Client::<svc::softbus::SoftBus>::new(endpoint);
        match server.call(&svc::softbus::Request::Proxy { name, client: badge }, PROXY_TIMEOUT_NS) {
            Ok(svc::softbus::Response::Proxy { endpoint }) => Response::Found { endpoint },
            Ok(_) => Response::NotRegistered,
            Err(e) => {
                warn!("the soft bus server did not make a proxy for {}: {e:?}", svc::name_str(&name));
                Response::NotRegistered
            }
        }
    }
}

fn main() -> i32 {
    rt::log::set_prefix("names");
    let endpoint = match sys::endpoint_create() {
        Ok(e) => e,
        Err(e) => {
            warn!("no endpoint: {e}");
            return 1;
        }
    };
    let Ok(copy) = sys::cap_duplicate(endpoint, rights::SEND | rights::GRANT | rights::DUPLICATE, 0) else {
        return 1;
    };
    match svc::init().call(&svc::boot::Request::Provide { endpoint: Cap(copy) }, sys::FOREVER_NS) {
        Ok(svc::boot::Response::Done) => {}
        other => {
            warn!("init did not take the endpoint: {other:?}");
            return 1;
        }
    }
    let _ = sys::cap_close(copy);
    info!("serving");
    let mut registry = Registry::default();
    let error = Server::<Names>::new(endpoint).serve(|badge, request| registry.handle(badge, request));
    warn!("stopped: {error}");
    1
}
