//! The slow work: building a report, page by page, reporting progress.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use task_core::{TaskContext, TaskError, TaskResult, task};

/// What a person asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportRequest {
    /// The report's title (not empty).
    pub title: String,
    /// How many pages (1 to 100).
    pub pages: u32,
    /// How long each page takes, in ms (default 300: a few seconds for a report).
    #[serde(default)]
    pub page_ms: Option<u64>,
}

impl ReportRequest {
    /// Why this request cannot be built, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if self.title.trim().is_empty() {
            return Some("`title` must not be empty".into());
        }
        if !(1..=100).contains(&self.pages) {
            return Some(format!("`pages` must be between 1 and 100, not {}", self.pages));
        }
        if self.page_ms.is_some_and(|ms| ms > 2_000) {
            return Some("`page_ms` must be at most 2000".into());
        }
        None
    }
}

/// The finished report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The title asked for.
    pub title: String,
    /// Pages built.
    pub pages: u32,
    /// Words written.
    pub words: u64,
    /// A checksum of the text (the "real work"), in hex: JSON numbers past 2^53 would
    /// lose digits in a browser.
    pub checksum: String,
}

/// How far the task is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Pages done.
    pub done: u32,
    /// Pages in all.
    pub total: u32,
}

/// Builds a report: some real work per page (hashing generated text) and a pause that
/// stands for I/O, storing progress after each page. A title containing "fail" fails,
/// to show how errors reach the page.
#[task(name = "reports.build", time_limit = 600)]
pub async fn build_report(ctx: TaskContext, request: ReportRequest) -> TaskResult<Report> {
    if let Some(problem) = request.problem() {
        return Err(TaskError::fatal(problem));
    }
    let pause = Duration::from_millis(request.page_ms.unwrap_or(300));
    let (mut words, mut checksum) = (0u64, 0xcbf2_9ce4_8422_2325u64);
    for page in 1..=request.pages {
        if ctx.is_cancelled() {
            return Err(TaskError::new(format!("stopped at page {page}")));
        }
        let text = format!("{} — page {page}: ", request.title).repeat(200);
        words += text.split_whitespace().count() as u64;
        checksum = text.bytes().fold(checksum, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        tokio::time::sleep(pause).await;
        ctx.set_progress(&Progress { done: page, total: request.pages }).await?;
    }
    if request.title.to_lowercase().contains("fail") {
        return Err(TaskError::fatal(format!(
            "the report `{}` could not be printed: the printer is on fire",
            request.title
        )));
    }
    Ok(Report { title: request.title, pages: request.pages, words, checksum: format!("{checksum:016x}") })
}
