//! The desktop's notification server (`org.freedesktop.Notifications` on
//! the session bus, as the Desktop Notifications Specification 1.2 has
//! it): what it can do, notifications sent, and the actions invoked on
//! them.

use std::collections::HashMap;

use zbus::zvariant::Value;

use crate::policy::Note;

/// The application name notifications carry.
pub const APP_NAME: &str = "leco";

/// The desktop entry shipped with leco (`leco.desktop`), named in every
/// notification so that the desktop can list and mute leco's.
pub const DESKTOP_ENTRY: &str = "leco";

/// The action that mutes a notification's program.
pub const MUTE_ACTION: &str = "mute";

/// `org.freedesktop.Notifications`, the members leco uses.
#[zbus::proxy(
    interface = "org.freedesktop.Notifications",
    default_service = "org.freedesktop.Notifications",
    default_path = "/org/freedesktop/Notifications",
    gen_blocking = false
)]
pub trait Notifications {
    /// Shows a notification (replacing `replaces_id`'s when not 0); its id.
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        app_name: &str,
        replaces_id: u32,
        app_icon: &str,
        summary: &str,
        body: &str,
        actions: &[&str],
        hints: HashMap<&str, Value<'_>>,
        expire_timeout: i32,
    ) -> zbus::Result<u32>;

    /// What the server supports: "actions", "body-markup", ...
    fn get_capabilities(&self) -> zbus::Result<Vec<String>>;

    /// An action of notification `id` was invoked.
    #[zbus(signal)]
    fn action_invoked(&self, id: u32, action_key: String) -> zbus::Result<()>;
}

/// What a server that marks up bodies would read as markup, escaped (the
/// specification's body markup is a subset of XML).
pub fn escape_markup(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// The hints every notification carries: low urgency, category network,
/// leco's desktop entry.
fn hints() -> HashMap<&'static str, Value<'static>> {
    HashMap::from([
        ("urgency", Value::U8(0)),
        ("category", Value::from("network")),
        ("desktop-entry", Value::from(DESKTOP_ENTRY)),
    ])
}

/// The session's notification server, as far as leco uses it.
#[derive(Debug)]
pub struct Desktop {
    proxy: NotificationsProxy<'static>,
    /// Whether it shows actions (then "Mute this program" is offered).
    actions: bool,
    /// Whether it reads markup in bodies (then they are escaped).
    markup: bool,
}

impl Desktop {
    /// The server on `conn`, with what it can do.
    pub async fn new(conn: &zbus::Connection) -> zbus::Result<Desktop> {
        let proxy = NotificationsProxy::new(conn).await?;
        let caps = proxy.get_capabilities().await?;
        tracing::debug!("the notification server can: {}", caps.join(", "));
        Ok(Desktop {
            actions: caps.iter().any(|c| c == "actions"),
            markup: caps.iter().any(|c| c == "body-markup"),
            proxy,
        })
    }

    /// The server's proxy (for its signals).
    pub fn proxy(&self) -> &NotificationsProxy<'static> {
        &self.proxy
    }

    /// Shows `note`; its id.
    pub async fn show(&self, note: &Note) -> zbus::Result<u32> {
        let actions: &[&str] = if self.actions {
            &[MUTE_ACTION, "Mute this program"]
        } else {
            &[]
        };
        self.proxy
            .notify(
                APP_NAME,
                0,
                "network-wired",
                &note.summary,
                &self.body(&note.body),
                actions,
                hints(),
                -1,
            )
            .await
    }

    /// Shows or updates (`replaces` not 0) the "+N more" notification.
    pub async fn more(&self, more: u32, replaces: u32) -> zbus::Result<u32> {
        let what = if more == 1 {
            "notification"
        } else {
            "notifications"
        };
        self.proxy
            .notify(
                APP_NAME,
                replaces,
                "network-wired",
                &format!("leco: +{more} more"),
                &self.body(&format!(
                    "{more} more {what} held back: more than the cap a minute \
                     (max-per-minute in config.kdl)"
                )),
                &[],
                hints(),
                -1,
            )
            .await
    }

    fn body(&self, text: &str) -> String {
        if self.markup {
            escape_markup(text)
        } else {
            text.to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            escape_markup("<b>a & b</b>"),
            "&lt;b&gt;a &amp; b&lt;/b&gt;"
        );
    }

    #[test]
    fn hints_say_low_urgency_network_and_leco() {
        let h = hints();
        assert_eq!(h["urgency"], Value::U8(0));
        assert_eq!(h["category"], Value::from("network"));
        assert_eq!(h["desktop-entry"], Value::from("leco"));
    }
}
