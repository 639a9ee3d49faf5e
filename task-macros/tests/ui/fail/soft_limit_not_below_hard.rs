use task_core::{task, TaskResult};

#[task(soft_time_limit = 30, time_limit = 30)]
async fn slow() -> TaskResult<()> {
    Ok(())
}

fn main() {}
