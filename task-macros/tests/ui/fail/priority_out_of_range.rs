use task_core::{task, TaskResult};

#[task(priority = 10)]
async fn urgent() -> TaskResult<()> {
    Ok(())
}

fn main() {}
