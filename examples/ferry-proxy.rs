//! The test suite's TCP fault proxy as a command, for benchmarks and manual experiments:
//!
//! ```sh
//! cargo run --release --example ferry-proxy -- --listen 127.0.0.1:10143 \
//!     --target 127.0.0.1:143 --latency-ms 25 --bandwidth 125000 --seed 1
//! ```
//!
//! Options: `--listen ADDR` (default 127.0.0.1:0), `--target ADDR` (required), `--latency-ms N`
//! (one way), `--bandwidth BYTES` (per second, each direction), `--cut-after N`,
//! `--stall-after N`, `--seed N`. Loopback addresses only. Prints `listening on ADDR`, then runs
//! until killed.

#[allow(dead_code)]
#[path = "../tests/common/proxy.rs"]
mod proxy;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use proxy::{Faults, Proxy};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry-proxy: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let mut listen: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
    let mut target: Option<SocketAddr> = None;
    let mut faults = Faults::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {v}"))
        };
        match flag.as_str() {
            "--listen" => listen = parse_addr(&value()?)?,
            "--target" => target = Some(parse_addr(&value()?)?),
            "--latency-ms" => faults.latency = Duration::from_millis(number(value()?)?),
            "--bandwidth" => faults.bandwidth = Some(number(value()?)?),
            "--cut-after" => faults.cut_after = Some(number(value()?)?),
            "--stall-after" => faults.stall_after = Some(number(value()?)?),
            "--seed" => faults.seed = number(value()?)?,
            "-h" | "--help" => {
                println!(
                    "usage: ferry-proxy --target 127.0.0.1:PORT [--listen 127.0.0.1:PORT] \
                     [--latency-ms N] [--bandwidth BYTES] [--cut-after N] [--stall-after N] \
                     [--seed N]"
                );
                return Ok(());
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    let target = target.ok_or("--target 127.0.0.1:PORT is required")?;
    let proxy = Proxy::start_on(listen, target, faults).map_err(|e| e.to_string())?;
    println!("listening on {}", proxy.addr());
    loop {
        std::thread::park();
    }
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let a: SocketAddr = s
        .parse()
        .map_err(|_| format!("{s}: expected IP:PORT, e.g. 127.0.0.1:10143"))?;
    if !a.ip().is_loopback() {
        return Err(format!("{s}: only loopback addresses are allowed"));
    }
    Ok(a)
}
