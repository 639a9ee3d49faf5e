use task_core::{task, TaskContext as Ctx, TaskResult};

// The context is found by its type's name: a renamed import is taken for an argument.
#[task]
async fn import(ctx: Ctx, rows: u32) -> TaskResult<u32> {
    let _ = ctx;
    Ok(rows)
}

fn main() {}
