//! The PCI enumerator service (docs/drivers.md): with only the configuration ports
//! `0xcf8`-`0xcff` from its manifest (`ports 0xcf8-0xcff`), it lists every function on bus 0
//! and behind bridges: vendor and device, class, BARs with their probed sizes, interrupt line
//! and pin. Then it reports status 0 to init and ends.
#![no_std]
#![no_main]

extern crate alloc;

use drivers::pci::{self, ConfigPorts};

rt::entry!(main);

fn main() -> i32 {
    let caps = match svc::capabilities() {
        Ok(caps) => caps,
        Err(e) => {
            rt::println!("pci: no capabilities from init: {e:?}");
            return svc::exit(1);
        }
    };
    let Some((ports, first, count)) = svc::first_ports(&caps) else {
        rt::println!("pci: the manifest gives no I/O ports");
        return svc::exit(1);
    };
    let cam = match ConfigPorts::new(ports) {
        Ok(cam) => cam,
        Err(e) => {
            rt::println!("pci: ports {first:#x}+{count} do not reach the configuration registers: {e:?}");
            return svc::exit(1);
        }
    };
    let found = pci::enumerate(&cam, |f| {
        rt::println!(
            "pci: {} {:04x}:{:04x} class {:02x}.{:02x}.{:02x} ({}) irq line {} pin {}",
            f.address,
            f.vendor,
            f.device,
            f.class,
            f.subclass,
            f.prog_if,
            pci::class_name(f.class, f.subclass),
            f.interrupt_line,
            match f.interrupt_pin {
                1..=4 => ["-", "INTA", "INTB", "INTC", "INTD"][f.interrupt_pin as usize],
                _ => "-",
            },
        );
        for (slot, bar) in f.bars.iter().enumerate() {
            if let Some(bar) = bar {
                rt::println!("pci: {}   bar{slot} {bar}", f.address);
            }
        }
        if let Some(bus) = f.secondary_bus {
            rt::println!("pci: {}   bridge to bus {bus}", f.address);
        }
    });
    rt::println!("pci: {found} functions");
    svc::exit(0)
}
