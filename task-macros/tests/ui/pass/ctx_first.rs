use task_core::{task, TaskContext, TaskResult};

#[task]
async fn import(ctx: TaskContext, rows: u32) -> TaskResult<u32> {
    ctx.set_progress(&rows).await?;
    Ok(rows + ctx.attempt())
}

#[task]
fn sync_with_ctx(ctx: task_core::TaskContext) -> TaskResult<String> {
    Ok(ctx.id().to_string())
}

fn main() {
    let _ = import::signature(5);
    let _ = sync_with_ctx::signature();
}
