use task_core::task;

#[task]
struct NotATask;

fn main() {}
