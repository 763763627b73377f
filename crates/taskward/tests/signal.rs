//! Real signals to this test process. One test per binary: signal dispositions are
//! process-wide, so nothing else may run here.

use std::time::Duration;

use rustix::process::{Signal, getpid, kill_process};
use taskward::signal::{SignalEvent, Signals, shutdown_on_signals};
use taskward::testing::Harness;
use taskward::{Phase, ShutdownPolicy};

fn raise(signal: Signal) {
    kill_process(getpid(), signal).expect("signal to self");
}

// Asserts: SIGHUP is a reload; the first SIGTERM starts a graceful shutdown that would
// wait its full 60 s for a stubborn task; the second stop signal (SIGINT) skips it to the
// abort phase; SIGQUIT (a process manager's fast stop) is immediate even as the first.
#[test]
fn first_signal_graceful_second_immediate_hup_reload() {
    Harness::multi_thread(2).run(|app| async move {
        let mut signals = Signals::new().expect("handlers install");
        raise(Signal::HUP);
        assert_eq!(signals.recv().await, SignalEvent::Reload);

        app.spawn("stubborn", std::future::pending::<()>())
            .expect("open");
        let worker = app
            .task("polite")
            .spawn_with(|ctx| async move { ctx.cancelled().await })
            .expect("open");
        let policy = ShutdownPolicy::new(Duration::from_secs(60));
        let run = shutdown_on_signals(&app, &mut signals, policy);
        tokio::pin!(run);

        raise(Signal::TERM);
        tokio::select! {
            _ = &mut run => panic!("a graceful shutdown with a stubborn task cannot end yet"),
            joined = worker => joined.expect("the polite task stopped on the first signal"),
        }
        assert!(app.is_cancelled());

        raise(Signal::INT);
        let report = run.await;
        assert_eq!(report.phase, Phase::Abort, "{report}");
        assert_eq!(report.counts.aborted, 1);
        assert_eq!(report.counts.cancelled, 1);
        assert!(
            report.elapsed < Duration::from_secs(60),
            "the second signal cut the grace short"
        );

        let mut fresh = Signals::new().expect("handlers install");
        raise(Signal::QUIT);
        assert_eq!(fresh.recv().await, SignalEvent::Immediate);
    });
}
