//! A call's arguments, by position and by name, mapped onto a Rust task's parameters.

use serde_json::{Map, Value};

use super::CeleryError;

/// The arguments of a call by position and by name, mapped onto `params` (a task's
/// parameters in order, [`task_core::TaskEntry::params`]) as Celery maps them onto a
/// Python function's: the positional ones first, then the named ones. Too many, a name
/// given twice, an unknown name or a missing parameter is an error that says which.
pub fn args_by_name(
    task: &str,
    params: &[&str],
    args: Vec<Value>,
    mut kwargs: Map<String, Value>,
) -> Result<Map<String, Value>, CeleryError> {
    if args.len() > params.len() {
        return Err(CeleryError::new(format!(
            "{task}() takes {} positional arguments but {} were given",
            params.len(),
            args.len()
        )));
    }
    let mut named = Map::with_capacity(params.len());
    for (param, value) in params.iter().zip(args) {
        if kwargs.contains_key(*param) {
            return Err(CeleryError::new(format!("{task}() got multiple values for argument '{param}'")));
        }
        named.insert((*param).to_owned(), value);
    }
    for param in &params[named.len()..] {
        match kwargs.remove(*param) {
            Some(value) => {
                named.insert((*param).to_owned(), value);
            }
            None => return Err(CeleryError::new(format!("{task}() missing required argument: '{param}'"))),
        }
    }
    if let Some(unknown) = kwargs.keys().next() {
        return Err(CeleryError::new(format!("{task}() got an unexpected keyword argument '{unknown}'")));
    }
    Ok(named)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arguments_map_by_position_then_by_name_as_python_would() {
        let params = ["x", "y", "z"];
        let map = |args: Value, kwargs: Value| {
            let (Value::Array(args), Value::Object(kwargs)) = (args, kwargs) else { unreachable!() };
            args_by_name("add", &params, args, kwargs)
        };
        assert_eq!(
            map(json!([1, 2]), json!({"z": 3})).unwrap(),
            json!({"x": 1, "y": 2, "z": 3}).as_object().unwrap().clone()
        );
        assert_eq!(map(json!([]), json!({"z": 3, "x": 1, "y": 2})).unwrap().len(), 3);
        let e = |args, kwargs| map(args, kwargs).unwrap_err().to_string();
        assert_eq!(e(json!([1, 2, 3, 4]), json!({})), "add() takes 3 positional arguments but 4 were given");
        assert_eq!(e(json!([1]), json!({"x": 2, "y": 1, "z": 0})), "add() got multiple values for argument 'x'");
        assert_eq!(e(json!([1, 2]), json!({})), "add() missing required argument: 'z'");
        assert_eq!(e(json!([1, 2, 3]), json!({"w": 1})), "add() got an unexpected keyword argument 'w'");
    }
}
