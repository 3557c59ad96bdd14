//! Graceful shutdown: a future that completes on SIGTERM or SIGINT (Ctrl-C).

use tokio::sync::watch;

/// Completes when the process receives SIGTERM or SIGINT.
pub async fn signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!(signal = "SIGINT", "shutting down"),
        () = terminate => tracing::info!(signal = "SIGTERM", "shutting down"),
    }
}

/// A shutdown trigger that many tasks can wait on.
#[derive(Clone, Debug)]
pub struct Shutdown {
    receiver: watch::Receiver<bool>,
}

/// The sending half of [`Shutdown`]: dropping it or calling [`Trigger::fire`] stops every waiter.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

impl Trigger {
    /// Tells every [`Shutdown`] waiter to stop.
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// A new trigger and its waiter.
    pub fn new() -> (Trigger, Shutdown) {
        let (sender, receiver) = watch::channel(false);
        (Trigger(sender), Shutdown { receiver })
    }

    /// A waiter that completes on SIGTERM or SIGINT.
    pub fn on_signal() -> Shutdown {
        let (trigger, shutdown) = Shutdown::new();
        tokio::spawn(async move {
            signal().await;
            trigger.fire();
        });
        shutdown
    }

    /// Whether shutdown was triggered (or its trigger dropped).
    pub fn is_triggered(&self) -> bool {
        *self.receiver.borrow() || self.receiver.has_changed().is_err()
    }

    /// Completes once shutdown was triggered (or its trigger dropped).
    pub async fn wait(mut self) {
        // An error means the trigger is gone, which also means stop.
        let _ = self.receiver.wait_for(|stop| *stop).await;
    }
}
