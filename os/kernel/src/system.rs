//! The kernel model (`kcore::kernel`) on this machine: traps from user mode become calls of
//! the model, and the model's choice of the next thread becomes the registers, FPU state and
//! address space the CPU returns to.
//!
//! One kernel stack serves every entry; a thread's user registers live in its context in the
//! model, copied out of the trap frame on entry and back on exit. When no thread is ready the
//! kernel idles with interrupts enabled; interrupts taken while idle only count timer ticks,
//! and the idle loop feeds the time to the model.

use crate::arch::cpu;
use crate::arch::cpu::{rdtsc, wait_for_interrupt};
use crate::arch::gdt::{USER_CODE, USER_DATA};
use crate::arch::paging::MapError;
use crate::arch::trap::{self, FpuState, TrapFrame};
use crate::space::AddressSpace;
use abi::syscall::{regs, Args, Return, Sys};
use alloc::boxed::Box;
use core::sync::atomic::{AtomicU64, Ordering};
use kcore::kernel::{Access, BadAddress, Devices, Fault, Kernel, Machine, MapFailure, ThreadId};
use spin::{Mutex, MutexGuard};

/// A thread's saved user state.
pub struct Context {
    frame: TrapFrame,
    fpu: Box<FpuState>,
    /// The `fs` segment base (thread-local storage), set with `ThreadRegs`; user code cannot
    /// change it itself (CR4.FSGSBASE is off).
    fs_base: u64,
}

/// IA32_FS_BASE, and the value it holds now (loaded when a thread with another one runs).
const IA32_FS_BASE: u32 = 0xc000_0100;
static LOADED_FS_BASE: AtomicU64 = AtomicU64::new(0);

/// Arithmetic flags, TF and DF: what `ThreadRegs` may set in rflags (IF stays on, IOPL 0).
const USER_RFLAGS: u64 = 0xdd5;

/// Loads `fs_base` into the CPU if it is not there already.
fn load_fs_base(fs_base: u64) {
    if LOADED_FS_BASE.swap(fs_base, Ordering::Relaxed) != fs_base {
        // Safety: IA32_FS_BASE exists on every x86_64 CPU; the value is a canonical user
        // address (checked when it was set) or 0.
        unsafe { cpu::wrmsr(IA32_FS_BASE, fs_base) };
    }
}

/// The machine side of the model.
pub struct Arch;

impl Machine for Arch {
    type Space = AddressSpace;
    type Context = Context;

    fn read_user(&mut self, space: &AddressSpace, addr: u64, buf: &mut [u8]) -> Result<(), BadAddress> {
        space.read_user(addr, buf).map_err(|_| BadAddress)
    }

    fn write_user(&mut self, space: &AddressSpace, addr: u64, buf: &[u8]) -> Result<(), BadAddress> {
        space.write_user(addr, buf).map_err(|_| BadAddress)
    }

    fn now(&mut self) -> u64 {
        now_ns()
    }

    fn context_regs(&self, context: &Context) -> [u64; regs::COUNT] {
        let f = &context.frame;
        [
            f.rax,
            f.rbx,
            f.rcx,
            f.rdx,
            f.rsi,
            f.rdi,
            f.rbp,
            f.rsp,
            f.r8,
            f.r9,
            f.r10,
            f.r11,
            f.r12,
            f.r13,
            f.r14,
            f.r15,
            f.rip,
            f.rflags,
            context.fs_base,
        ]
    }

    fn set_context_regs(&mut self, context: &mut Context, r: &[u64; regs::COUNT]) -> bool {
        let user = |a: u64| a < elf::USER_END;
        if !user(r[regs::RIP]) || !user(r[regs::RSP]) || !user(r[regs::FS_BASE]) {
            return false;
        }
        let f = &mut context.frame;
        [f.rax, f.rbx, f.rcx, f.rdx, f.rsi, f.rdi, f.rbp, f.rsp] = [r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]];
        [f.r8, f.r9, f.r10, f.r11, f.r12, f.r13, f.r14, f.r15] = [r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]];
        f.rip = r[regs::RIP];
        f.rflags = (r[regs::RFLAGS] & USER_RFLAGS) | 0x202;
        context.fs_base = r[regs::FS_BASE];
        true
    }

    fn log_read(&mut self, from: u64, out: &mut [u8]) -> (u64, usize, u64) {
        crate::console::log_read(from, out)
    }

    fn console_write(&mut self, text: &str) {
        crate::console::print(format_args!("{text}"));
    }

    fn new_context(&mut self, entry: u64, stack: u64, arg: u64) -> Context {
        let frame = TrapFrame {
            rip: entry,
            rsp: stack,
            rdi: arg,
            cs: USER_CODE as u64,
            ss: USER_DATA as u64,
            rflags: 0x202, // IF
            ..TrapFrame::default()
        };
        Context { frame, fpu: Box::new(FpuState::new()), fs_base: 0 }
    }

    fn new_space(&mut self) -> Option<AddressSpace> {
        AddressSpace::new().ok()
    }

    fn alloc_frame(&mut self) -> Option<u64> {
        crate::mem::alloc_frame()
    }

    fn alloc_contiguous(&mut self, pages: u64) -> Option<u64> {
        crate::mem::alloc_contiguous(pages)
    }

    fn free_frame(&mut self, frame: u64) {
        crate::mem::free_frame(frame);
    }

    fn map_page(&mut self, space: &mut AddressSpace, vaddr: u64, frame: u64, access: Access) -> Result<(), MapFailure> {
        space.map_page(vaddr, frame, access).map_err(|e| match e {
            MapError::AlreadyMapped(_) => MapFailure::InUse,
            MapError::OutOfFrames => MapFailure::NoMemory,
        })
    }

    fn unmap_page(&mut self, space: &mut AddressSpace, vaddr: u64) {
        space.unmap_page(vaddr);
    }

    fn port_allowed(&self, port: u16, width: u8) -> bool {
        let (start, end) = (port as u32, port as u32 + width as u32);
        !KERNEL_PORTS.iter().any(|&(a, b)| start < b && end > a)
    }

    fn port_read(&mut self, port: u16, width: u8) -> u32 {
        // Safety: the model checked the port against the caller's capability and
        // `port_allowed`; reading a device register is what a driver holding it may do.
        unsafe {
            match width {
                1 => cpu::inb(port) as u32,
                2 => cpu::inw(port) as u32,
                _ => cpu::inl(port),
            }
        }
    }

    fn port_write(&mut self, port: u16, width: u8, value: u32) {
        // Safety: as in `port_read`.
        unsafe {
            match width {
                1 => cpu::outb(port, value as u8),
                2 => cpu::outw(port, value as u16),
                _ => cpu::outl(port, value),
            }
        }
    }

    fn irq_mask(&mut self, line: u8, masked: bool) {
        crate::arch::ioapic::set_masked(line, masked);
    }
}

/// I/O ports only the kernel uses, whatever capabilities say: the 8259 PICs, the PIT and its
/// gate (0x61), QEMU's debug-exit device.
const KERNEL_PORTS: [(u32, u32); 5] = [(0x20, 0x22), (0xa0, 0xa2), (0x40, 0x44), (0x61, 0x62), (0xf4, 0xf8)];

/// Interrupt lines that fired while the kernel was idle, for the idle loop to deliver.
static PENDING_IRQS: AtomicU64 = AtomicU64::new(0);

/// A device interrupt arrived (the line is masked already). From user mode the trap path
/// delivers it right away; while idle it is recorded here.
pub fn device_interrupt(line: u8) {
    PENDING_IRQS.fetch_or(1 << line, Ordering::Relaxed);
}

fn deliver_interrupts(k: &mut Kernel<Arch>) {
    let mut pending = PENDING_IRQS.swap(0, Ordering::Relaxed);
    while pending != 0 {
        let line = pending.trailing_zeros() as u8;
        pending &= pending - 1;
        k.interrupt(line);
    }
}

static KERNEL: Mutex<Option<Kernel<Arch>>> = Mutex::new(None);

/// Nanoseconds per TSC cycle as a 32.32 fixed-point number, and the TSC at boot, for the
/// model's clock (a multiply and a shift per reading, no division: it is read on every switch).
static NS_PER_CYCLE_32: AtomicU64 = AtomicU64::new(1 << 32);
static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);
/// The deadline the APIC timer is armed for (`u64::MAX`: stopped).
static ARMED: AtomicU64 = AtomicU64::new(u64::MAX);

/// Nanoseconds since boot.
fn now_ns() -> u64 {
    let cycles = rdtsc().saturating_sub(TSC_AT_BOOT.load(Ordering::Relaxed));
    ((cycles as u128 * NS_PER_CYCLE_32.load(Ordering::Relaxed) as u128) >> 32) as u64
}

/// Arms the one-shot timer for the model's next deadline, if that changed (tickless: no
/// interrupt at all while nothing has a deadline).
fn program_timer(k: &Kernel<Arch>) {
    let deadline = k.next_deadline().unwrap_or(u64::MAX);
    if ARMED.swap(deadline, Ordering::Relaxed) == deadline {
        return;
    }
    if deadline == u64::MAX {
        crate::arch::apic::disarm();
    } else {
        crate::arch::apic::arm(deadline.saturating_sub(now_ns()));
    }
}

/// The timer fired: it is no longer armed.
pub fn timer_fired() {
    ARMED.store(u64::MAX, Ordering::Relaxed);
}

extern "C" {
    static boot_stack_top: u8;
}

/// Starts the first task and never returns: from here on the kernel runs only on traps.
pub fn start(
    name: &str,
    space: AddressSpace,
    quota: u64,
    (entry, stack): (u64, u64),
    devices: Devices,
    timer: &crate::arch::apic::TimerInfo,
) -> ! {
    NS_PER_CYCLE_32.store(((1_000_000u128 << 32) / timer.tsc_per_ms.max(1) as u128) as u64, Ordering::Relaxed);
    TSC_AT_BOOT.store(rdtsc(), Ordering::Relaxed);
    crate::arch::apic::one_shot(timer);
    let stack_top = &raw const boot_stack_top as u64;
    crate::arch::gdt::set_kernel_stack(stack_top);
    crate::arch::syscall::init(stack_top);
    let mut kernel = Kernel::new(Arch);
    if let Err(e) = kernel.create_init(name, space, quota, entry, stack, devices) {
        crate::refuse("init", &format_args!("{e:?}"));
    }
    *KERNEL.lock() = Some(kernel);
    let mut idle = TrapFrame::default();
    let first = resume(KERNEL.lock(), &mut idle, None);
    // Safety: `resume` chose a user thread and loaded its FPU pointer and address space; its
    // saved frame is valid until the first trap.
    unsafe { trap::enter_user(&*first, stack_top) }
}

/// A trap from user mode: the frame is the interrupted thread's registers. They stay in the
/// frame (not copied into the thread's context) unless another thread runs next. Returns the
/// frame to return to user mode from: this one, or the next thread's saved frame.
pub fn user_trap(frame: &mut TrapFrame) -> *const TrapFrame {
    let mut guard = KERNEL.lock();
    let k = guard.as_mut().expect("the kernel runs once a task exists");
    let interrupted = k.current();
    match frame.vector {
        trap::SYSCALL_VECTOR if frame.rax == Sys::Yield as u64 && k.fast_yield() => {
            frame.rax = 0;
            return frame;
        }
        trap::SYSCALL_VECTOR => k.syscall(&Args {
            rax: frame.rax,
            a: [frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9, frame.r12],
        }),
        v if v < trap::EXCEPTION_COUNT => {
            let address = if v == 14 { crate::arch::cpu::cr2() } else { 0 };
            report_fault(k, frame, address);
            k.fault(Fault { vector: v, error_code: frame.error_code, address, rip: frame.rip });
        }
        _ => {}
    }
    if frame.vector == trap::TIMER_VECTOR as u64 {
        k.tick(now_ns());
    }
    deliver_interrupts(k);
    resume(guard, frame, interrupted)
}

/// Logs a user fault: at debug level when a supervisor will handle it (that is normal
/// operation, e.g. demand paging), as a warning when it ends the task.
fn report_fault(k: &Kernel<Arch>, frame: &TrapFrame, address: u64) {
    let task = k.current_task();
    let name = task.and_then(|t| k.task(t)).map_or("?", |t| t.name.as_str());
    let what = crate::fault::exception_name(frame.vector);
    let supervised = task.is_some_and(|t| k.has_supervisor(t));
    let level = if supervised { log::Level::Debug } else { log::Level::Warn };
    log::log!(
        level,
        "task {name}: {what} at rip {:#x}, address {address:#x}, error code {:#x}{}",
        frame.rip,
        frame.error_code,
        if supervised { "; to its supervisor" } else { "; no supervisor, task ended" }
    );
}

/// Picks the next thread (idling until there is one), loads its FPU pointer and address space,
/// and returns the frame holding its registers. `frame` holds the registers of `interrupted`
/// (if any): the same thread goes on from it; otherwise they are saved into its context and the
/// next thread's saved frame is returned.
fn resume(
    mut guard: MutexGuard<'_, Option<Kernel<Arch>>>,
    frame: &mut TrapFrame,
    mut interrupted: Option<ThreadId>,
) -> *const TrapFrame {
    loop {
        {
            let k = guard.as_mut().expect("the kernel runs once a task exists");
            report_ended(k);
            let next = k.schedule();
            program_timer(k);
            if let Some(id) = next.filter(|n| Some(*n) == interrupted) {
                // The same thread goes on: its registers are in the frame already.
                let (result, rax) = k.thread_mut(id).map_or((None, None), |t| t.take_results());
                if let Some(r) = result {
                    write_return(frame, &r);
                }
                if let Some(rax) = rax {
                    frame.rax = rax;
                }
                return frame;
            }
            // Another thread (or none): the interrupted one's registers go to its context.
            if let Some(thread) = interrupted.take().and_then(|id| k.thread_mut(id)) {
                thread.context.frame = *frame;
            }
            if let Some(next) = next {
                let thread = k.thread_mut(next).expect("scheduled threads exist");
                let (result, rax) = thread.take_results();
                if let Some(r) = result {
                    write_return(&mut thread.context.frame, &r);
                }
                if let Some(rax) = rax {
                    thread.context.frame.rax = rax;
                }
                load_fs_base(thread.context.fs_base);
                // Safety: one CPU; the area lives as long as the thread, and the thread stays
                // current until the next trap, which saves into it first.
                unsafe { trap::CURRENT_FPU = &mut *thread.context.fpu };
                let saved: *const TrapFrame = &thread.context.frame;
                let task = thread.task;
                if let Some(t) = k.task(task) {
                    t.space.activate();
                }
                // The thread is not removed before the return path has read the frame: nothing
                // runs between here and iretq.
                return saved;
            }
            if k.task_count() == 0 {
                log::info!("no tasks left");
                crate::shutdown::exit(abi::exit::ExitCode::Success);
            }
        }
        drop(guard);
        wait_for_interrupt();
        guard = KERNEL.lock();
        let k = guard.as_mut().expect("set at start");
        k.tick(now_ns());
        deliver_interrupts(k);
    }
}

fn write_return(frame: &mut TrapFrame, r: &Return) {
    frame.rax = r.status;
    frame.rdi = r.r[0];
    frame.rsi = r.r[1];
    frame.rdx = r.r[2];
    frame.r10 = r.r[3];
    frame.r8 = r.r[4];
    frame.r9 = r.r[5];
    frame.r12 = r.r[6];
}

fn report_ended(k: &mut Kernel<Arch>) {
    while let Some(end) = k.take_ended() {
        if end.status == -1 {
            // Ended by its creator (`CapRevoke`), as linuxd ends every Linux process: the
            // creator reports it if it matters; at `info` it would interleave with output.
            log::debug!("task {} ended by its creator", end.name);
        } else {
            log::info!("task {} exited with status {}", end.name, end.status);
        }
        if end.was_init {
            crate::shutdown::init_ended(end.status);
        }
    }
}
