//! `imagegram-convert IN OUT.jpg`: the converter Lambda's engine
//! (`imagegram::pipeline::convert::convert_reader`) on a file, read through
//! the same 1 MiB buffered, front-to-back reader the Lambda puts over the S3
//! body. `imagegram-convert-bench` times it against vipsthumbnail.

use std::fs::File;
use std::io::BufReader;
use std::process::ExitCode;

use imagegram::pipeline::convert::{Limits, convert_reader};

fn main() -> ExitCode {
    let code = run();
    // The process's own peak (VmHWM: this program's memory since exec, not
    // the parent's that a forked child's ru_maxrss also counts), for
    // bench/tests/memory.rs.
    if std::env::var_os("IMAGEGRAM_REPORT_PEAK").is_some() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        if let Some(kib) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            eprintln!("peak_rss_kib={kib}");
        }
    }
    code
}

fn run() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = &args[..] else {
        eprintln!("usage: imagegram-convert IN OUT.jpg");
        return ExitCode::from(2);
    };
    let file = match File::open(input) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{input}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match convert_reader(BufReader::with_capacity(1 << 20, file), &Limits::default()) {
        Ok(converted) => match std::fs::write(output, converted.jpeg) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{output}: {e}");
                ExitCode::FAILURE
            }
        },
        Err(refused) => {
            eprintln!("refused: {refused}");
            ExitCode::FAILURE
        }
    }
}
