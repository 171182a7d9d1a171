//! Human-readable output: aligned tables and a job's details.

use serde_json::Value;

use crate::commands::text;

/// Formats rows as columns padded to their widest cell.
fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.iter().map(|h| h.to_uppercase()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

/// The job list.
pub fn jobs(jobs: &Value) -> String {
    let rows: Vec<Vec<String>> = jobs
        .as_array()
        .map(|jobs| {
            jobs.iter()
                .map(|job| {
                    vec![
                        text(&job["id"]),
                        text(&job["queue"]),
                        text(&job["kind"]),
                        text(&job["state"]),
                        format!("{}/{}", job["attempt"], job["max_attempts"]),
                        text(&job["created_at"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    render(
        &["id", "queue", "kind", "state", "attempt", "created"],
        &rows,
    )
}

/// The queue list.
pub fn queues(queues: &Value) -> String {
    let rows: Vec<Vec<String>> = queues
        .as_array()
        .map(|queues| {
            queues
                .iter()
                .map(|q| {
                    let counts = &q["counts"];
                    let mut row = vec![
                        text(&q["name"]),
                        if q["paused"] == Value::Bool(true) {
                            "yes".into()
                        } else {
                            "no".into()
                        },
                    ];
                    for state in [
                        "scheduled",
                        "queued",
                        "running",
                        "completed",
                        "dead",
                        "cancelled",
                    ] {
                        row.push(text(&counts[state]));
                    }
                    row.push(match q["oldest_ready_age"].as_f64() {
                        Some(age) => format!("{age:.1}s"),
                        None => "-".into(),
                    });
                    row
                })
                .collect()
        })
        .unwrap_or_default();
    render(
        &[
            "queue",
            "paused",
            "scheduled",
            "queued",
            "running",
            "completed",
            "dead",
            "cancelled",
            "oldest",
        ],
        &rows,
    )
}

/// The worker list.
pub fn workers(workers: &Value) -> String {
    let rows: Vec<Vec<String>> = workers
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            let queues: Vec<String> = w["queues"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            vec![
                text(&w["name"]),
                text(&w["node"]),
                text(&w["host"]),
                text(&w["pid"]),
                format!("{} {}", text(&w["sdk"]), text(&w["version"])),
                queues.join(","),
                format!("{}/{}", w["running"], w["capacity"]),
                text(&w["connected_at"]),
                text(&w["last_seen"]),
            ]
        })
        .collect();
    render(
        &[
            "name",
            "node",
            "host",
            "pid",
            "sdk",
            "queues",
            "running",
            "connected",
            "last seen",
        ],
        &rows,
    )
}

/// One job in detail.
pub fn job_detail(job: &Value) -> String {
    let mut out = String::new();
    for field in [
        "id",
        "queue",
        "kind",
        "state",
        "priority",
        "worker_id",
        "created_at",
        "run_at",
        "started_at",
        "finished_at",
        "deadline",
    ] {
        out.push_str(&format!("{field:<12} {}\n", text(&job[field])));
    }
    out.push_str(&format!(
        "{:<12} {}/{}\n",
        "attempt", job["attempt"], job["max_attempts"]
    ));
    out.push_str(&format!("{:<12} {}\n", "args", job["args"]));
    if !job["progress"].is_null() {
        out.push_str(&format!("{:<12} {}\n", "progress", job["progress"]));
    }
    if !job["result"].is_null() {
        out.push_str(&format!("{:<12} {}\n", "result", job["result"]));
    }
    for error in job["errors"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "error #{}    {}: {}\n",
            error["attempt"],
            text(&error["type"]),
            text(&error["message"])
        ));
        if let Some(traceback) = error["traceback"].as_str() {
            for line in traceback.lines() {
                out.push_str(&format!("    {line}\n"));
            }
        }
    }
    out
}

/// The cron schedule list, with each schedule's next fire times.
pub fn cron(schedules: &Value) -> String {
    let rows: Vec<Vec<String>> = schedules
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let next: Vec<String> = c["next_fire_times"]
                .as_array()
                .into_iter()
                .flatten()
                .take(3)
                .map(text)
                .collect();
            vec![
                text(&c["name"]),
                text(&c["schedule"]),
                text(&c["tz"]),
                text(&c["job"]["kind"]),
                c["job"]["queue"].as_str().unwrap_or("default").to_owned(),
                text(&c["catch_up"]),
                if c["paused"] == Value::Bool(true) {
                    "yes".into()
                } else {
                    "no".into()
                },
                if next.is_empty() {
                    "-".into()
                } else {
                    next.join(", ")
                },
                text(&c["last_fire"]),
            ]
        })
        .collect();
    render(
        &[
            "name", "schedule", "tz", "kind", "queue", "catch-up", "paused", "next", "last",
        ],
        &rows,
    )
}
