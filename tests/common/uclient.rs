//! coturn's `turnutils_uclient`: running it and reading its closing summary.

use std::net::IpAddr;
use std::time::Duration;

use super::{Server, ToolRun, run_tool, tool};

/// The summary `turnutils_uclient` prints at the end of a run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UclientSummary {
    /// From `start_mclient: tot_send_msgs=N, tot_recv_msgs=M` (the final line).
    pub sent: u64,
    pub received: u64,
    /// From `Total lost packets N (...), total send dropped M (...)`.
    pub lost: u64,
    pub send_dropped: u64,
}

/// A finished `turnutils_uclient` run.
#[derive(Debug)]
pub struct Uclient {
    pub run: ToolRun,
    /// `None` when the run did not print its closing summary (it failed before relaying).
    pub summary: Option<UclientSummary>,
    /// Lines that report an error (`ERROR: ...`, `... error 403 (...)`).
    pub errors: Vec<String>,
}

impl Uclient {
    /// Runs `turnutils_uclient ARGS SERVER_IP` with at most 60 s.
    pub fn run(args: &[&str], server: IpAddr) -> Uclient {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.push(server.to_string());
        let run = run_tool(&tool("turnutils_uclient"), &all, Duration::from_secs(60));
        let summary = parse_uclient_summary(&run.output);
        let errors = run
            .output
            .lines()
            .filter(|l| l.to_ascii_lowercase().contains("error"))
            .map(str::to_owned)
            .collect();
        Uclient {
            run,
            summary,
            errors,
        }
    }

    /// Asserts a clean relay run: exit 0, no error line, `expected` messages sent, every one
    /// received back, nothing lost or dropped.
    pub fn assert_relayed(&self, expected: u64, server: &Server) {
        let context = || format!("{}\n--- server log ---\n{}", self.run, server.log());
        assert!(self.run.success(), "uclient failed:\n{}", context());
        assert!(
            self.errors.is_empty(),
            "uclient reported errors {:?}:\n{}",
            self.errors,
            context()
        );
        let summary = self
            .summary
            .as_ref()
            .unwrap_or_else(|| panic!("no uclient summary:\n{}", context()));
        assert_eq!(
            summary,
            &UclientSummary {
                sent: expected,
                received: expected,
                lost: 0,
                send_dropped: 0
            },
            "uclient summary:\n{}",
            context()
        );
    }
}

/// Parses the closing summary of `turnutils_uclient`.
pub fn parse_uclient_summary(output: &str) -> Option<UclientSummary> {
    let mut summary = UclientSummary::default();
    let mut have_counts = false;
    let mut have_loss = false;
    for line in output.lines() {
        // The final totals line has no "msz=" (the per-tick progress lines do).
        if line.contains("start_mclient: tot_send_msgs=") {
            summary.sent = number_after(line, "tot_send_msgs=")?;
            summary.received = number_after(line, "tot_recv_msgs=")?;
            have_counts = true;
        }
        if line.contains("Total lost packets ") {
            summary.lost = number_after(line, "Total lost packets ")?;
            summary.send_dropped = number_after(line, "total send dropped ")?;
            have_loss = true;
        }
    }
    (have_counts && have_loss).then_some(summary)
}

fn number_after(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uclient_summary_parses() {
        let output = "\
2: : start_mclient: msz=2, tot_send_msgs=10, tot_recv_msgs=10, tot_send_bytes ~ 1000, tot_recv_bytes ~ 1000
4: : start_mclient: tot_send_msgs=20, tot_recv_msgs=19
4: : start_mclient: tot_send_bytes ~ 2000, tot_recv_bytes ~ 1900
4: : Total transmit time is 4
4: : Total lost packets 1 (5.000000%), total send dropped 2 (0.000000%)
";
        assert_eq!(
            parse_uclient_summary(output),
            Some(UclientSummary {
                sent: 20,
                received: 19,
                lost: 1,
                send_dropped: 2
            })
        );
        assert_eq!(
            parse_uclient_summary("0: : ERROR: Cannot complete Allocation"),
            None
        );
    }
}
