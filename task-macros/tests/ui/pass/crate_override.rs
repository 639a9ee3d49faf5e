mod reexport {
    pub use task_core;
}

use reexport::task_core::{task, TaskResult};

#[task(crate = crate::reexport::task_core)]
async fn add(x: i64, y: i64) -> TaskResult<i64> {
    Ok(x + y)
}

fn main() {
    let _ = add::signature(1, 2);
}
