use task_core::{task, TaskContext, TaskResult};

#[task]
async fn import(rows: u32, ctx: TaskContext) -> TaskResult<u32> {
    let _ = ctx;
    Ok(rows)
}

fn main() {}
