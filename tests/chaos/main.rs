//! The database server itself hung: MariaDB stopped with SIGSTOP for 10 s
//! under a steady comment load, then resumed with SIGCONT. A binary of its
//! own, because it stops the server every other test uses: cargo runs test
//! binaries one after another, so nothing else runs meanwhile. Needs to
//! signal mariadbd (root, as scripts/test runs, or passwordless sudo).

use std::sync::Arc;
use std::time::Duration;

use imagegram::domain::PostStatus;
use imagegram_tests::faults::comment_load;
use imagegram_tests::spawn_app_spec;

fn signal(sig: &str) {
    let pid = std::fs::read_to_string("/run/mysqld/mysqld.pid")
        .expect("mariadbd's pid file (scripts/test starts MariaDB)");
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let mut kill = std::process::Command::new(if root { "kill" } else { "sudo" });
    if !root {
        kill.args(["-n", "kill"]);
    }
    let ok = kill
        .args([sig, pid.trim()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// Resumes the server however the test ends.
struct Resume;

impl Drop for Resume {
    fn drop(&mut self) {
        signal("-CONT");
    }
}

#[tokio::test]
async fn a_stopped_database_server_is_503_in_time_and_loses_nothing_acknowledged() {
    let app =
        Arc::new(spawn_app_spec(|s| s.env.push(("DB_TIMEOUT_MS".into(), "2000".into()))).await);
    let post = app
        .insert_post("alice", PostStatus::Published, 0)
        .await
        .to_string();
    let _resume = Resume;
    let mut stopped = false;
    let mut resumed = false;
    // 20 comments a second for 16 s; the server stopped from 3 s to 13 s.
    let report = comment_load(&app, &app.direct_db, &post, 20, 16, |t| {
        if !stopped && t >= Duration::from_secs(3) {
            signal("-STOP");
            stopped = true;
        }
        if !resumed && t >= Duration::from_secs(13) {
            signal("-CONT");
            resumed = true;
        }
    })
    .await;
    println!("mariadbd stopped 10 s (SIGSTOP/SIGCONT): {report}");
    report.check(Duration::from_secs(5));
}
