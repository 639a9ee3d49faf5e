use task_core::{task, TaskResult};

#[task(rate_limit = "100/fortnight")]
async fn metered() -> TaskResult<()> {
    Ok(())
}

fn main() {}
