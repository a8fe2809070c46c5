//! The tray menu and icon state as plain data.
//!
//! [`MenuModel::build`] turns what the agent reports (a [`StatusView`] and
//! the catalogue) into the menu the tray shows. It is pure and `PartialEq`,
//! so every state the tray can be in is unit-tested without Tauri, and the
//! Tauri side ([`crate::tray`]) only rebuilds the native menu when the model
//! actually changed.

use agent::control::view::{
    AWAITING_APPROVAL, AWAITING_APPROVAL_PHRASE, AppView, EnrolmentView, IdentityView, StatusView,
    TunnelState, TunnelView,
};

/// What the tray icon shows, one icon each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrayState {
    /// Nobody is signed in (or a fresh MFA sign-in is needed).
    SignedOut,
    /// Signed in and the device meets the policy.
    Compliant,
    /// Signed in but the device fails the policy (or is not evaluated yet):
    /// applications stay closed.
    NonCompliant,
    /// The agent cannot be reached, or a wanted tunnel is blocked for
    /// another reason.
    Error,
}

/// What clicking a menu entry does. Encoded in the native menu item's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start a browser sign-in (opens the window's sign-in screen).
    SignIn,
    /// Sign out.
    SignOut,
    /// Open the application.
    Connect(String),
    /// Close the application.
    Disconnect(String),
    /// Copy a local address to the clipboard.
    Copy(String),
    /// Show the posture page.
    Posture,
    /// Show the History page (what was decided and why).
    History,
    /// Show the window.
    Open,
    /// Write the diagnostics bundle.
    ExportDiagnostics,
    /// Show the About section.
    About,
    /// Quit the app.
    Quit,
}

impl Action {
    /// The native menu id: `kind` or `kind:argument`.
    pub fn id(&self) -> String {
        match self {
            Action::SignIn => "sign-in".into(),
            Action::SignOut => "sign-out".into(),
            Action::Connect(app) => format!("connect:{app}"),
            Action::Disconnect(app) => format!("disconnect:{app}"),
            Action::Copy(address) => format!("copy:{address}"),
            Action::Posture => "posture".into(),
            Action::History => "history".into(),
            Action::Open => "open".into(),
            Action::ExportDiagnostics => "export-diagnostics".into(),
            Action::About => "about".into(),
            Action::Quit => "quit".into(),
        }
    }

    /// The inverse of [`Action::id`]; `None` for ids this menu never made.
    pub fn from_id(id: &str) -> Option<Action> {
        let (kind, arg) = match id.split_once(':') {
            Some((kind, arg)) => (kind, Some(arg.to_owned())),
            None => (id, None),
        };
        Some(match (kind, arg) {
            ("sign-in", None) => Action::SignIn,
            ("sign-out", None) => Action::SignOut,
            ("connect", Some(app)) => Action::Connect(app),
            ("disconnect", Some(app)) => Action::Disconnect(app),
            ("copy", Some(address)) => Action::Copy(address),
            ("posture", None) => Action::Posture,
            ("history", None) => Action::History,
            ("open", None) => Action::Open,
            ("export-diagnostics", None) => Action::ExportDiagnostics,
            ("about", None) => Action::About,
            ("quit", None) => Action::Quit,
            _ => return None,
        })
    }
}

/// One menu entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A clickable entry (or a disabled line of information).
    Entry {
        /// What it says.
        label: String,
        /// What it does; `None` for an information line.
        action: Option<Action>,
        /// Greyed out when false.
        enabled: bool,
    },
    /// A submenu.
    Submenu {
        /// What it says.
        label: String,
        /// Its entries.
        items: Vec<Item>,
        /// Greyed out when false.
        enabled: bool,
    },
    /// A line.
    Separator,
}

impl Item {
    fn action(label: impl Into<String>, action: Action) -> Item {
        Item::Entry {
            label: label.into(),
            action: Some(action),
            enabled: true,
        }
    }

    fn info(label: impl Into<String>) -> Item {
        Item::Entry {
            label: label.into(),
            action: None,
            enabled: false,
        }
    }
}

/// The whole tray: icon state, tooltip and menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MenuModel {
    /// Which icon.
    pub state: TrayState,
    /// The tooltip (also the accessible name of the tray icon).
    pub tooltip: String,
    /// The menu, top to bottom.
    pub items: Vec<Item>,
}

/// The menu line while the broker does not answer.
const BROKER_UNREACHABLE_MENU: &str = "Access broker unreachable, retrying…";

impl MenuModel {
    /// The tray for what the agent reported: `Ok((status, catalogue))`, or
    /// `Err(message)` when the agent could not be asked.
    pub fn build(agent: Result<(&StatusView, &[AppView]), &str>) -> MenuModel {
        let (status, apps) = match agent {
            Ok(answer) => answer,
            Err(message) => return Self::unreachable(message),
        };
        let mut items = Vec::new();
        let user = match &status.identity {
            IdentityView::Valid { user, .. } => Some(user.as_str()),
            _ => None,
        };
        match &status.identity {
            IdentityView::Valid { user, .. } => {
                items.push(Item::info(format!("Signed in as {user}")));
                items.push(Item::action(format!("Sign out {user}"), Action::SignOut));
            }
            IdentityView::SignedOut => {
                items.push(Item::info("Signed out"));
                items.push(Item::action("Sign in…", Action::SignIn));
            }
            IdentityView::NeedsReauth { reason, .. } => {
                items.push(Item::info(format!("Sign-in needed: {reason}")));
                items.push(Item::action("Sign in again…", Action::SignIn));
            }
        }
        let awaiting_approval = matches!(status.enrolment, EnrolmentView::PendingApproval { .. });
        if awaiting_approval {
            items.push(Item::info(AWAITING_APPROVAL));
        }
        // The agent runs without its broker (at boot, before the network)
        // and retries by itself: the menu says what it waits for.
        if status.broker_unreachable.is_some() {
            items.push(Item::info(BROKER_UNREACHABLE_MENU));
        }
        items.push(Item::Separator);
        items.push(Item::Submenu {
            label: "Applications".into(),
            items: if apps.is_empty() {
                vec![Item::info("No applications")]
            } else {
                apps.iter()
                    .map(|app| app_menu(app, status.tunnels.iter().find(|t| t.app == app.id)))
                    .collect()
            },
            enabled: user.is_some(),
        });
        let problems = status.verdict.as_ref().map(|v| v.violations.len());
        let posture = match problems {
            None => "Posture: not evaluated yet".to_owned(),
            Some(0) => "Posture: Compliant".to_owned(),
            Some(1) => "Posture: 1 problem".to_owned(),
            Some(n) => format!("Posture: {n} problems"),
        };
        items.push(Item::action(posture.clone(), Action::Posture));
        items.push(Item::action("History…", Action::History));
        // The device service's updater, when it has news for the user.
        if let Some(line) = status.update.as_ref().and_then(update_line) {
            items.push(Item::info(line));
        }
        items.push(Item::Separator);
        items.push(Item::action("Open Sallyport", Action::Open));
        items.push(Item::action(
            "Export diagnostics…",
            Action::ExportDiagnostics,
        ));
        items.push(Item::action("About Sallyport", Action::About));
        items.push(Item::Separator);
        items.push(Item::action("Quit", Action::Quit));

        let blocked = status.tunnels.iter().any(|t| t.state == TunnelState::Down);
        let up = status
            .tunnels
            .iter()
            .filter(|t| t.state == TunnelState::Up)
            .count();
        let (state, tooltip) = match (user, &status.identity, status.verdict.as_ref()) {
            _ if status.broker_unreachable.is_some() => (
                TrayState::Error,
                format!("Sallyport: {}", agent::control::view::BROKER_UNREACHABLE),
            ),
            (None, IdentityView::NeedsReauth { .. }, _) => {
                (TrayState::SignedOut, "Sallyport: sign-in needed".to_owned())
            }
            (None, _, _) => (TrayState::SignedOut, "Sallyport: signed out".to_owned()),
            // Nothing is wrong with the device; nothing opens yet either.
            (Some(_), _, _) if awaiting_approval => (
                TrayState::NonCompliant,
                format!("Sallyport: {}", AWAITING_APPROVAL_PHRASE),
            ),
            (Some(_), _, None) => (
                TrayState::NonCompliant,
                "Sallyport: checking this device…".to_owned(),
            ),
            (Some(_), _, Some(v)) if !v.compliant => (
                TrayState::NonCompliant,
                format!("Sallyport: {}", posture.trim_start_matches("Posture: ")),
            ),
            (Some(_), _, Some(_)) if blocked => (
                TrayState::Error,
                "Sallyport: an application is blocked".to_owned(),
            ),
            (Some(_), _, Some(_)) => (
                TrayState::Compliant,
                format!(
                    "Sallyport: compliant, {up} application{} connected",
                    if up == 1 { "" } else { "s" }
                ),
            ),
        };
        MenuModel {
            state,
            tooltip,
            items,
        }
    }

    /// The agent cannot be asked: say so, and keep what still works.
    fn unreachable(message: &str) -> MenuModel {
        MenuModel {
            state: TrayState::Error,
            tooltip: format!("Sallyport: {message}"),
            items: vec![
                Item::info(message),
                Item::Separator,
                Item::action("Open Sallyport", Action::Open),
                Item::action("Export diagnostics…", Action::ExportDiagnostics),
                Item::action("About Sallyport", Action::About),
                Item::Separator,
                Item::action("Quit", Action::Quit),
            ],
        }
    }
}

/// One application's submenu: its state, connect or disconnect, and its
/// local addresses (clicking one copies it).
fn app_menu(app: &AppView, tunnel: Option<&TunnelView>) -> Item {
    let state = match tunnel.map(|t| t.state) {
        Some(TunnelState::Up) => "connected",
        Some(TunnelState::Connecting) => "connecting…",
        Some(TunnelState::Down) => "blocked",
        None => "not connected",
    };
    let mut items = Vec::new();
    if let Some(reason) = tunnel.and_then(|t| t.reason.as_deref()) {
        items.push(Item::info(reason));
    }
    if app.wanted || tunnel.is_some() {
        items.push(Item::action(
            "Disconnect",
            Action::Disconnect(app.id.clone()),
        ));
    } else {
        items.push(Item::action("Connect", Action::Connect(app.id.clone())));
    }
    if let Some(t) = tunnel.filter(|t| t.state == TunnelState::Up) {
        for forward in &t.forwards {
            items.push(Item::action(
                format!("Copy {} ({})", forward.local, forward.target),
                Action::Copy(forward.local.clone()),
            ));
        }
        if let Some(socks) = &t.socks {
            items.push(Item::action(
                format!("Copy SOCKS5 proxy {socks}"),
                Action::Copy(socks.clone()),
            ));
        }
    }
    Item::Submenu {
        label: format!("{} — {state}", app.name),
        items,
        enabled: true,
    }
}

/// The updater's news for the menu: available, installing, updated; the
/// rest (off, up to date, refused, failed) is for IT, not a menu line.
fn update_line(update: &agent::device_service::updater::UpdateStatus) -> Option<String> {
    use agent::device_service::updater::Phase;
    match &update.phase {
        Phase::Available { version, required } => Some(format!(
            "Update available: {version}{}",
            if *required { " (required)" } else { "" }
        )),
        Phase::Installing { version } => Some(format!("Installing update {version}…")),
        Phase::Updated { to, .. } => Some(format!("Updated to {to}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use agent::control::view::{ForwardView, VerdictView};
    use posture::policy::Violation;

    use super::*;

    fn status(
        identity: IdentityView,
        verdict: Option<bool>,
        tunnels: Vec<TunnelView>,
    ) -> StatusView {
        StatusView {
            identity,
            verdict: verdict.map(|compliant| VerdictView {
                compliant,
                violations: if compliant {
                    vec![]
                } else {
                    ["disk_encryption", "firewall"]
                        .iter()
                        .map(|c| Violation {
                            check: (*c).into(),
                            message: format!("{c} is off"),
                            remediation: format!("turn {c} on"),
                        })
                        .collect()
                },
                valid_until: "2026-11-23T11:00:00Z".into(),
            }),
            tunnels,
            posture_collected_at: None,
            enrolment: EnrolmentView::Enrolled {
                device_id: "oKIy".into(),
            },
            broker_unreachable: None,
            support_code: None,
            update: None,
        }
    }

    fn alice() -> IdentityView {
        IdentityView::Valid {
            user: "alice@example.com".into(),
            expires_at: "2026-11-23T18:00:00Z".into(),
            mfa: "otp".into(),
            step_up: None,
        }
    }

    fn wiki(wanted: bool) -> AppView {
        AppView {
            id: "wiki".into(),
            name: "Wiki".into(),
            targets: vec!["10.0.0.5:443/tcp".into()],
            wanted,
            access: agent::control::view::AccessView {
                can_open: true,
                reasons: vec![],
                step_up: None,
                opens_at: None,
                closes_at: None,
                source: agent::control::view::AccessSource::Broker,
            },
        }
    }

    fn tunnel(state: TunnelState, reason: Option<&str>) -> TunnelView {
        TunnelView {
            app: "wiki".into(),
            state,
            reason: reason.map(Into::into),
            forwards: vec![ForwardView {
                target: "10.0.0.5:443/tcp".into(),
                local: "127.0.0.1:40123".into(),
            }],
            socks: Some("127.0.0.1:40124".into()),
            socks_username: None,
            socks_password: None,
            bytes_in: 0,
            bytes_out: 0,
            last_handshake: None,
            expires_at: None,
        }
    }

    fn entry(label: &str, action: Action) -> Item {
        Item::action(label, action)
    }

    fn labels(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                Item::Entry { label, .. } | Item::Submenu { label, .. } => label.clone(),
                Item::Separator => "---".into(),
            })
            .collect()
    }

    #[test]
    fn a_device_waiting_for_approval_says_so_in_the_menu_and_the_tooltip() {
        let mut pending = status(
            alice(),
            None,
            vec![tunnel(TunnelState::Down, Some(AWAITING_APPROVAL))],
        );
        pending.enrolment = EnrolmentView::PendingApproval {
            device_id: "oKIy".into(),
            since: "2026-11-23T10:00:00Z".into(),
        };
        let model = MenuModel::build(Ok((&pending, &[wiki(true)])));
        assert_eq!(model.state, TrayState::NonCompliant);
        assert_eq!(
            model.tooltip,
            "Sallyport: waiting for IT to approve this device"
        );
        assert_eq!(
            model.items[2],
            Item::info("Waiting for IT to approve this device.")
        );
        // The application says why it stays closed.
        let Item::Submenu { items: apps, .. } = &model.items[4] else {
            panic!("{:#?}", model.items);
        };
        let Item::Submenu { label, items, .. } = &apps[0] else {
            panic!("{apps:#?}");
        };
        assert_eq!(label, "Wiki — blocked");
        assert_eq!(items[0], Item::info(AWAITING_APPROVAL));
    }

    #[test]
    fn an_unreachable_broker_is_said_in_the_menu_and_the_tooltip() {
        let mut waiting = status(IdentityView::SignedOut, None, vec![]);
        waiting.broker_unreachable = Some(format!(
            "{}: cannot reach the access broker: connection refused",
            agent::control::view::BROKER_UNREACHABLE
        ));
        let model = MenuModel::build(Ok((&waiting, &[])));
        assert_eq!(model.state, TrayState::Error);
        assert_eq!(
            model.tooltip,
            "Sallyport: access broker unreachable, retrying"
        );
        assert_eq!(labels(&model.items)[2], BROKER_UNREACHABLE_MENU);
    }

    #[test]
    fn signed_out_offers_sign_in_and_greys_out_applications() {
        let model = MenuModel::build(Ok((
            &status(IdentityView::SignedOut, None, vec![]),
            &[wiki(false)],
        )));
        assert_eq!(model.state, TrayState::SignedOut);
        assert_eq!(model.tooltip, "Sallyport: signed out");
        assert_eq!(
            labels(&model.items),
            [
                "Signed out",
                "Sign in…",
                "---",
                "Applications",
                "Posture: not evaluated yet",
                "History…",
                "---",
                "Open Sallyport",
                "Export diagnostics…",
                "About Sallyport",
                "---",
                "Quit"
            ]
        );
        assert_eq!(model.items[1], entry("Sign in…", Action::SignIn));
        assert!(matches!(
            &model.items[3],
            Item::Submenu { enabled: false, .. }
        ));
    }

    #[test]
    fn compliant_and_connected_shows_the_user_the_app_and_its_addresses() {
        let model = MenuModel::build(Ok((
            &status(alice(), Some(true), vec![tunnel(TunnelState::Up, None)]),
            &[wiki(true)],
        )));
        assert_eq!(model.state, TrayState::Compliant);
        assert_eq!(
            model.tooltip,
            "Sallyport: compliant, 1 application connected"
        );
        assert_eq!(model.items[0], Item::info("Signed in as alice@example.com"));
        assert_eq!(
            model.items[1],
            entry("Sign out alice@example.com", Action::SignOut)
        );
        assert_eq!(
            model.items[3],
            Item::Submenu {
                label: "Applications".into(),
                enabled: true,
                items: vec![Item::Submenu {
                    label: "Wiki — connected".into(),
                    enabled: true,
                    items: vec![
                        entry("Disconnect", Action::Disconnect("wiki".into())),
                        entry(
                            "Copy 127.0.0.1:40123 (10.0.0.5:443/tcp)",
                            Action::Copy("127.0.0.1:40123".into())
                        ),
                        entry(
                            "Copy SOCKS5 proxy 127.0.0.1:40124",
                            Action::Copy("127.0.0.1:40124".into())
                        ),
                    ],
                }],
            }
        );
        assert_eq!(model.items[4], entry("Posture: Compliant", Action::Posture));
    }

    #[test]
    fn an_app_not_wanted_offers_connect_and_no_addresses() {
        let model = MenuModel::build(Ok((&status(alice(), Some(true), vec![]), &[wiki(false)])));
        let Item::Submenu { items, .. } = &model.items[3] else {
            panic!("no applications submenu: {model:?}");
        };
        assert_eq!(
            items[0],
            Item::Submenu {
                label: "Wiki — not connected".into(),
                enabled: true,
                items: vec![entry("Connect", Action::Connect("wiki".into()))],
            }
        );
        assert_eq!(
            model.tooltip,
            "Sallyport: compliant, 0 applications connected"
        );
    }

    #[test]
    fn non_compliant_counts_the_problems_and_the_blocked_app_says_why() {
        let reason = "device not compliant: disk_encryption";
        let model = MenuModel::build(Ok((
            &status(
                alice(),
                Some(false),
                vec![tunnel(TunnelState::Down, Some(reason))],
            ),
            &[wiki(true)],
        )));
        assert_eq!(model.state, TrayState::NonCompliant);
        assert_eq!(model.tooltip, "Sallyport: 2 problems");
        assert_eq!(
            model.items[4],
            entry("Posture: 2 problems", Action::Posture)
        );
        let Item::Submenu { items, .. } = &model.items[3] else {
            panic!("no applications submenu: {model:?}");
        };
        assert_eq!(
            items[0],
            Item::Submenu {
                label: "Wiki — blocked".into(),
                enabled: true,
                items: vec![
                    Item::info(reason),
                    entry("Disconnect", Action::Disconnect("wiki".into())),
                ],
            }
        );
    }

    #[test]
    fn a_blocked_tunnel_on_a_compliant_device_is_an_error_state() {
        let model = MenuModel::build(Ok((
            &status(
                alice(),
                Some(true),
                vec![tunnel(TunnelState::Down, Some("gateway unreachable"))],
            ),
            &[wiki(true)],
        )));
        assert_eq!(model.state, TrayState::Error);
    }

    #[test]
    fn no_verdict_yet_is_not_shown_as_compliant() {
        let model = MenuModel::build(Ok((&status(alice(), None, vec![]), &[])));
        assert_eq!(model.state, TrayState::NonCompliant);
        assert_eq!(model.tooltip, "Sallyport: checking this device…");
        let Item::Submenu { items, .. } = &model.items[3] else {
            panic!("no applications submenu: {model:?}");
        };
        assert_eq!(items, &[Item::info("No applications")]);
    }

    #[test]
    fn needs_reauth_asks_for_a_new_sign_in_with_the_reason() {
        let model = MenuModel::build(Ok((
            &status(
                IdentityView::NeedsReauth {
                    user: Some("alice@example.com".into()),
                    reason: "MFA older than 12 h".into(),
                    step_up: None,
                },
                Some(true),
                vec![],
            ),
            &[],
        )));
        assert_eq!(model.state, TrayState::SignedOut);
        assert_eq!(model.tooltip, "Sallyport: sign-in needed");
        assert_eq!(
            model.items[0],
            Item::info("Sign-in needed: MFA older than 12 h")
        );
        assert_eq!(model.items[1], entry("Sign in again…", Action::SignIn));
    }

    #[test]
    fn agent_unreachable_is_an_error_with_the_message_and_quit_still_works() {
        let model = MenuModel::build(Err("The Sallyport agent is not running"));
        assert_eq!(model.state, TrayState::Error);
        assert_eq!(
            model.items[0],
            Item::info("The Sallyport agent is not running")
        );
        assert_eq!(model.items.last(), Some(&entry("Quit", Action::Quit)));
        assert!(model.items.contains(&entry("Open Sallyport", Action::Open)));
    }

    #[test]
    fn the_same_answer_builds_the_same_model_so_the_tray_is_not_rebuilt() {
        let s = status(alice(), Some(true), vec![tunnel(TunnelState::Up, None)]);
        let apps = [wiki(true)];
        assert_eq!(
            MenuModel::build(Ok((&s, &apps))),
            MenuModel::build(Ok((&s, &apps)))
        );
    }

    #[test]
    fn the_updaters_news_is_a_menu_line() {
        use agent::device_service::updater::{Phase, UpdateStatus};
        let mut s = status(alice(), Some(true), vec![]);
        let line = |s: &StatusView| {
            MenuModel::build(Ok((s, &[])))
                .items
                .iter()
                .find_map(|i| match i {
                    Item::Entry {
                        label,
                        action: None,
                        ..
                    } if label.contains("pdate") => Some(label.clone()),
                    _ => None,
                })
        };
        assert_eq!(line(&s), None);
        for (phase, want) in [
            (
                Phase::Available {
                    version: "0.2.0".into(),
                    required: false,
                },
                Some("Update available: 0.2.0"),
            ),
            (
                Phase::Installing {
                    version: "0.2.0".into(),
                },
                Some("Installing update 0.2.0…"),
            ),
            (
                Phase::Updated {
                    from: "0.1.0".into(),
                    to: "0.2.0".into(),
                },
                Some("Updated to 0.2.0"),
            ),
            (Phase::UpToDate, None),
        ] {
            s.update = Some(UpdateStatus {
                running: "0.1.0".into(),
                phase,
                last_check: None,
                recent: Vec::new(),
            });
            assert_eq!(line(&s).as_deref(), want);
        }
    }

    #[test]
    fn action_ids_round_trip_and_unknown_ids_are_ignored() {
        for action in [
            Action::SignIn,
            Action::SignOut,
            Action::Connect("wiki".into()),
            Action::Disconnect("git:ssh".into()),
            Action::Copy("[::1]:40123".into()),
            Action::Posture,
            Action::History,
            Action::Open,
            Action::ExportDiagnostics,
            Action::About,
            Action::Quit,
        ] {
            assert_eq!(Action::from_id(&action.id()), Some(action));
        }
        assert_eq!(Action::from_id("format-disk"), None);
        assert_eq!(Action::from_id("connect"), None);
        assert_eq!(Action::from_id("quit:now"), None);
    }
}
