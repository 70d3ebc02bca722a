//! Each cycle's push to the consumers of `[push]`: Nagios's command file,
//! Icinga 2's API. Every cycle pushes every result, so a push that fails
//! is carried again by the next; each failure is logged and recorded (the
//! whole site's report then says it, a `push` warning) until a push works.

use std::path::Path;
use std::time::Instant;

use crate::config::Config;
use crate::push::icinga2::Icinga2;
use crate::push::{self, Pushed};
use crate::site::keeper::Keeper;

/// The consumers, as the config sets them (made again at a reload).
pub struct Pushers {
    /// Icinga 2's client, or why it could not be made (its CA unreadable).
    icinga2: Option<Result<Icinga2, String>>,
}

impl Pushers {
    pub fn new(cfg: &Config) -> Pushers {
        Pushers {
            icinga2: (!cfg.push.icinga2_url.is_empty()).then(|| Icinga2::new(&cfg.push)),
        }
    }

    /// Pushes `results` to each consumer and records how it went.
    pub fn push(
        &self,
        cfg: &Config,
        results: &[Pushed],
        refused: &[String],
        time: i64,
        keeper: &mut Keeper,
    ) {
        for name in refused {
            tracing::warn!(
                "{:?} is not a name Nagios and Icinga 2 accept: its results are not pushed",
                xsmon_proto::text::clean(name, 80)
            );
        }
        if !cfg.push.nagios_command_file.as_os_str().is_empty() {
            let outcome = to_nagios(&cfg.push.nagios_command_file, results, time);
            record(keeper, "Nagios", time, outcome);
        }
        if let Some(client) = &self.icinga2 {
            let outcome = client
                .as_ref()
                .map_err(String::clone)
                .and_then(|c| to_icinga2(c, results, cfg.service.freshness()));
            record(keeper, "Icinga 2", time, outcome);
        }
    }
}

fn record(keeper: &mut Keeper, consumer: &str, time: i64, outcome: Result<(), String>) {
    if let Err(e) = &outcome {
        tracing::error!("push to {consumer} failed, the next cycle pushes again: {e}");
    }
    if let Err(e) = keeper.pushed(
        consumer,
        time,
        outcome.as_ref().map(|_| ()).map_err(String::as_str),
    ) {
        tracing::error!("how the push to {consumer} went could not be recorded: {e:#}");
    }
}

fn to_nagios(path: &Path, results: &[Pushed], time: i64) -> Result<(), String> {
    let t = Instant::now();
    push::nagios::write_commands(path, results, time)?;
    tracing::info!(
        results = results.len(),
        ms = t.elapsed().as_millis() as u64,
        "pushed to Nagios"
    );
    Ok(())
}

/// A result Icinga 2 has no object for is a failure too: that guest or
/// dom0 is not watched there until the objects are generated again.
fn to_icinga2(client: &Icinga2, results: &[Pushed], ttl_secs: u64) -> Result<(), String> {
    let t = Instant::now();
    let outcome = client.push(results, ttl_secs)?;
    tracing::info!(
        results = outcome.taken,
        ms = t.elapsed().as_millis() as u64,
        "pushed to Icinga 2"
    );
    if let Some(first) = outcome.unknown.first() {
        return Err(format!(
            "Icinga 2 has no object for {} of the site's hosts ({}{}): regenerate them with `poller icinga2-objects` and reload Icinga 2",
            outcome.unknown.len(),
            xsmon_proto::text::clean(first, 80),
            if outcome.unknown.len() > 1 { ", ..." } else { "" }
        ));
    }
    Ok(())
}
