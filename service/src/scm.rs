//! `sallyportd --service`: running under the Windows Service Control
//! Manager (the binary's module, not the library's). The SCM starts the
//! process, `service_dispatcher::start` hands this thread to it, and the
//! service's own thread reports Running, serves until the SCM says Stop,
//! and reports Stopped with the exit code.
//!
//! Restart on failure: the MSI cannot say it (`wixl` has no
//! `ServiceConfig`), so the service sets its own failure actions at every
//! start: restart after 5 s, three times, the count reset after a day,
//! also when it stops with an error rather than crashing. Setting them
//! needs `SERVICE_CHANGE_CONFIG` on itself, which LocalSystem has; failing
//! to set them is logged, not fatal.

use std::ffi::OsString;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
    ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod, ServiceState, ServiceStatus,
    ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};

/// The service's name, as the MSI registers it.
pub const SERVICE_NAME: &str = "sallyportd";

/// What the service thread runs: serve until the future completes.
type Body = Box<dyn FnOnce(StopSignal) -> anyhow::Result<()> + Send>;

/// Completes when the SCM asks the service to stop.
pub type StopSignal = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The body, handed from `run_as_service` to the SCM's thread (the
/// dispatcher takes a plain function, so it goes through a static).
static BODY: OnceLock<Mutex<Option<Body>>> = OnceLock::new();

define_windows_service!(ffi_service_main, service_main);

/// Hands this process to the SCM and runs `body` as the service.
pub fn run_as_service<F>(body: F) -> anyhow::Result<()>
where
    F: FnOnce(StopSignal) -> anyhow::Result<()> + Send + 'static,
{
    let _ = BODY.set(Mutex::new(Some(Box::new(body))));
    service_dispatcher::start(SERVICE_NAME, ffi_service_main)
        .map_err(|e| anyhow::anyhow!("not started by the Service Control Manager: {e}"))
}

fn service_main(_arguments: Vec<OsString>) {
    if let Err(e) = run_service() {
        tracing::error!(error = %e, "the service failed");
    }
}

fn status(state: ServiceState, exit: u32) -> ServiceStatus {
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: if state == ServiceState::Running {
            ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
        } else {
            ServiceControlAccept::empty()
        },
        exit_code: ServiceExitCode::Win32(exit),
        checkpoint: 0,
        wait_hint: Duration::from_secs(10),
        process_id: None,
    }
}

fn run_service() -> anyhow::Result<()> {
    let body = BODY
        .get()
        .and_then(|slot| slot.lock().ok()?.take())
        .ok_or_else(|| anyhow::anyhow!("the service was started twice"))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stop_tx = Mutex::new(Some(stop_tx));
    let handle = service_control_handler::register(SERVICE_NAME, move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            if let Some(tx) = stop_tx.lock().ok().and_then(|mut tx| tx.take()) {
                let _ = tx.send(());
            }
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    })?;
    if let Err(e) = set_failure_actions() {
        tracing::warn!(error = %e, "could not set the restart-on-failure actions");
    }
    handle.set_service_status(status(ServiceState::Running, 0))?;
    tracing::info!("running as a Windows service");
    let stop: StopSignal = Box::pin(async move {
        let _ = stop_rx.await;
    });
    let result = body(stop);
    // A non-zero exit code counts as a failure, so the restart actions
    // apply (non-crash failures are enabled below).
    let exit = u32::from(result.is_err());
    if let Err(e) = &result {
        tracing::error!(error = %e, "sallyportd stopped with an error");
    }
    handle.set_service_status(status(ServiceState::Stopped, exit))?;
    result
}

/// Restart after 5 s, up to three times a day, also on an error exit.
fn set_failure_actions() -> windows_service::Result<()> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)?;
    let service = manager.open_service(SERVICE_NAME, ServiceAccess::CHANGE_CONFIG)?;
    let restart = ServiceAction {
        action_type: ServiceActionType::Restart,
        delay: Duration::from_secs(5),
    };
    service.update_failure_actions(ServiceFailureActions {
        reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(24 * 3600)),
        reboot_msg: None,
        command: None,
        actions: Some(vec![restart.clone(), restart.clone(), restart]),
    })?;
    service.set_failure_actions_on_non_crash_failures(true)
}
