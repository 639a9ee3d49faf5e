use task_core::{task, App, TaskResult};

// One error for the bad option, none for the callers below: the task still expands.
#[task(time_limit = 0)]
async fn add(x: i64, y: i64) -> TaskResult<i64> {
    Ok(x + y)
}

async fn caller(app: &App) {
    let _ = add::delay(app, 1, 2).await;
    let _ = add::signature(1, 2).queue("math");
}

fn main() {
    let _ = caller;
}
