use task_core::{task, Task, TaskResult};

#[task(
    name = "reports.build",
    queue = "reports",
    priority = 7,
    max_retries = 4,
    retry_backoff = 2,
    retry_backoff_max = 60,
    retry_jitter = false,
    time_limit = 120,
    soft_time_limit = 100,
    expires = 3600,
    rate_limit = "30/m",
    unique_for = 600,
    ignore_result = false,
    acks_early = true,
    result_ttl = 86400
)]
async fn build(report_id: u64) -> TaskResult<String> {
    Ok(report_id.to_string())
}

fn main() {
    let o = <build::Task as Task>::OPTIONS;
    assert_eq!(o.priority, Some(7));
    assert_eq!(o.rate_limit.unwrap().to_string(), "30/m");
    assert!(o.acks_early && !o.ignore_result);
}
