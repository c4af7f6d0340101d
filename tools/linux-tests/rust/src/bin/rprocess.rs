//! Processes through Rust's std: arguments and environment, `Command` with captured output,
//! piped standard input, exit codes, a child killed by a signal, a missing program, the current
//! executable, and `std::process::exit`. Usage: `rprocess` (the parent) or
//! `rprocess child <mode>` (what the parent runs). The parent prints `R ` lines, ends with
//! `R done`.

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

fn child(mode: &str) {
    match mode {
        "echo" => {
            let args: Vec<String> = std::env::args().skip(3).collect();
            println!("child args {args:?} var {:?}", std::env::var("TUTTI_TEST_VAR").ok());
        }
        "upper" => {
            let mut input = String::new();
            std::io::stdin().read_to_string(&mut input).unwrap();
            print!("{}", input.to_uppercase());
            eprint!("{} bytes in", input.len());
        }
        "exit" => std::process::exit(7),
        "abort" => std::process::abort(),
        _ => std::process::exit(2),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        return child(&args[2]);
    }
    let me = std::env::current_exe().unwrap();
    println!("R current_exe ends with rprocess: {}", me.to_string_lossy().ends_with("rprocess"));
    println!("R argc {}", args.len());

    let out =
        Command::new(&me).args(["child", "echo", "one", "two words"]).env("TUTTI_TEST_VAR", "set").output().unwrap();
    println!("R echo child: status {:?}, stdout {:?}", out.status.code(), String::from_utf8_lossy(&out.stdout));

    let mut upper = Command::new(&me)
        .args(["child", "upper"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let text = "hello from the parent\n".repeat(200);
    upper.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = upper.wait_with_output().unwrap();
    println!(
        "R piped child: status {:?}, {} bytes out, upper {}, stderr {:?}",
        out.status.code(),
        out.stdout.len(),
        out.stdout == text.to_uppercase().as_bytes(),
        String::from_utf8_lossy(&out.stderr)
    );

    let status = Command::new(&me).args(["child", "exit"]).status().unwrap();
    println!("R exit code: {:?}", status.code());
    let status = Command::new(&me).args(["child", "abort"]).stderr(Stdio::null()).status().unwrap();
    println!("R aborted child: code {:?}, signal {:?}", status.code(), status.signal());
    let missing = Command::new("/no/such/program").status().unwrap_err();
    println!("R missing program: {:?}", missing.kind());

    let mut children: Vec<_> = (0..5).map(|_| Command::new(&me).args(["child", "exit"]).spawn().unwrap()).collect();
    let codes: Vec<Option<i32>> = children.iter_mut().map(|c| c.wait().unwrap().code()).collect();
    println!("R five children at once: {codes:?}");
    println!("R pid positive {}", std::process::id() > 0);
    println!("R done");
}
