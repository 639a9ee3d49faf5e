use task_core::{task, TaskResult};

#[task(max_retries = "5")]
async fn add(x: i64, y: i64) -> TaskResult<i64> {
    Ok(x + y)
}

fn main() {}
