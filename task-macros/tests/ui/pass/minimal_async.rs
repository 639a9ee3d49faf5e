use task_core::{task, TaskResult};

#[task]
async fn add(x: i64, y: i64) -> TaskResult<i64> {
    Ok(x + y)
}

fn main() {
    let _: &str = add::NAME;
    let _args = add::Args { x: 1, y: 2 };
    let _sig: task_core::Signature<i64> = add::signature(1, 2);
    let _direct = add(1, 2);
}
