use task_core::{task, TaskResult};

#[task]
async fn sum((a, b): (i64, i64)) -> TaskResult<i64> {
    Ok(a + b)
}

fn main() {}
