//! Threads through Rust's std: spawn and join with results, scoped threads, Mutex, RwLock,
//! Condvar, Barrier, channels, atomics, park/unpark, thread-locals, OnceLock, sleep and named
//! threads. Prints `R ` lines, ends with `R done`.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Condvar, Mutex, OnceLock, RwLock};
use std::thread;
use std::time::{Duration, Instant};

thread_local! {
    static LOCAL: Cell<u32> = const { Cell::new(1) };
}

fn main() {
    let counter = Arc::new(Mutex::new(0u64));
    let handles: Vec<_> = (0..6u64)
        .map(|i| {
            let counter = Arc::clone(&counter);
            thread::spawn(move || {
                for _ in 0..1000 {
                    *counter.lock().unwrap() += 1;
                }
                LOCAL.with(|l| l.set(l.get() + i as u32));
                LOCAL.with(|l| l.get()) as u64 * 100 + i
            })
        })
        .collect();
    let results: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    println!(
        "R spawn/join: counter {}, results {results:?}, main's local {}",
        *counter.lock().unwrap(),
        LOCAL.with(|l| l.get())
    );

    let mut data = vec![1u64; 1000];
    thread::scope(|s| {
        for (i, part) in data.chunks_mut(250).enumerate() {
            s.spawn(move || part.iter_mut().for_each(|x| *x *= i as u64 + 1));
        }
    });
    println!("R scoped threads: sum {}", data.iter().sum::<u64>());

    let table = Arc::new(RwLock::new(vec![0u32; 8]));
    let writers: Vec<_> = (0..4)
        .map(|i| {
            let table = Arc::clone(&table);
            thread::spawn(move || {
                for _ in 0..100 {
                    table.write().unwrap()[i * 2] += 1;
                    let _seen: u32 = table.read().unwrap().iter().sum();
                }
            })
        })
        .collect();
    writers.into_iter().for_each(|h| h.join().unwrap());
    println!("R rwlock: {:?}", *table.read().unwrap());

    let pair = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
    let consumer = {
        let pair = Arc::clone(&pair);
        thread::spawn(move || {
            let (lock, ready) = &*pair;
            let mut got = 0u64;
            let mut count = 0;
            loop {
                let mut queue = ready.wait_while(lock.lock().unwrap(), |q: &mut Vec<u64>| q.is_empty()).unwrap();
                for item in queue.drain(..) {
                    if item == 0 {
                        return (count, got);
                    }
                    got += item;
                    count += 1;
                }
            }
        })
    };
    for item in (1..=300).chain([0]) {
        let (lock, ready) = &*pair;
        lock.lock().unwrap().push(item);
        ready.notify_one();
    }
    println!("R condvar: {:?}", consumer.join().unwrap());

    let (lock, ready) = &*pair;
    let start = Instant::now();
    let (_guard, timeout) = ready.wait_timeout(lock.lock().unwrap(), Duration::from_millis(30)).unwrap();
    println!(
        "R wait_timeout: timed out {}, at least 30 ms {}",
        timeout.timed_out(),
        start.elapsed() >= Duration::from_millis(30)
    );

    let barrier = Arc::new(Barrier::new(5));
    let arrived = Arc::new(AtomicU64::new(0));
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let (barrier, arrived) = (Arc::clone(&barrier), Arc::clone(&arrived));
            thread::spawn(move || {
                arrived.fetch_add(1, Ordering::SeqCst);
                let leader = barrier.wait().is_leader();
                (arrived.load(Ordering::SeqCst), leader)
            })
        })
        .collect();
    let main_leader = barrier.wait().is_leader();
    let seen: Vec<(u64, bool)> = waiters.into_iter().map(|h| h.join().unwrap()).collect();
    let leaders = seen.iter().filter(|s| s.1).count() + main_leader as usize;
    println!("R barrier: all saw 4 {}, leaders {leaders}", seen.iter().all(|s| s.0 == 4));

    let (tx, rx) = mpsc::channel();
    for id in 0..3u64 {
        let tx = tx.clone();
        thread::spawn(move || {
            for n in 0..100 {
                tx.send(id * 1000 + n).unwrap();
            }
        });
    }
    drop(tx);
    let mut all: Vec<u64> = rx.iter().collect();
    all.sort();
    println!("R channel: {} messages, sum {}", all.len(), all.iter().sum::<u64>());
    let (tx, rx) = mpsc::sync_channel(2);
    let producer = thread::spawn(move || (0..50u32).for_each(|n| tx.send(n).unwrap()));
    let total: u32 = rx.iter().sum();
    producer.join().unwrap();
    println!("R sync_channel of 2: sum {total}");

    let flag = Arc::new(AtomicU64::new(0));
    let parked = {
        let flag = Arc::clone(&flag);
        thread::spawn(move || {
            while flag.load(Ordering::SeqCst) == 0 {
                thread::park();
            }
            flag.load(Ordering::SeqCst)
        })
    };
    thread::sleep(Duration::from_millis(20));
    flag.store(42, Ordering::SeqCst);
    parked.thread().unpark();
    println!("R park/unpark: {}", parked.join().unwrap());

    static ONCE: OnceLock<u64> = OnceLock::new();
    let inits = Arc::new(AtomicU64::new(0));
    let racers: Vec<_> = (0..4)
        .map(|i| {
            let inits = Arc::clone(&inits);
            thread::spawn(move || {
                *ONCE.get_or_init(|| {
                    inits.fetch_add(1, Ordering::SeqCst);
                    100 + i
                }) >= 100
            })
        })
        .collect();
    let all_ok = racers.into_iter().all(|h| h.join().unwrap());
    println!("R OnceLock: initialised {} time(s), all saw it {all_ok}", inits.load(Ordering::SeqCst));

    let named =
        thread::Builder::new().name("worker-7".into()).spawn(|| thread::current().name().map(String::from)).unwrap();
    println!("R named thread: {:?}", named.join().unwrap());
    let panicked = thread::spawn(|| {
        std::panic::set_hook(Box::new(|_| {}));
        panic!("on purpose")
    })
    .join();
    println!("R a panicking thread: joined with an error {}", panicked.is_err());
    let start = Instant::now();
    thread::sleep(Duration::from_millis(25));
    println!("R sleep 25 ms: at least {}", start.elapsed() >= Duration::from_millis(25));
    println!("R done");
}
