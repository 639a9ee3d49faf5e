//! What turns the table of options in `attr.rs` into code: the `options!` macro, the
//! duplicate check every row shares, and the writer of the `TaskOptions` initialiser.

use proc_macro2::{Ident, Span, TokenStream};
use quote::quote;
use syn::spanned::Spanned;

/// From one row per option, `field: Type = "key", kind => sets,`, generates:
/// - `TaskArgs`, with a field `Option<Type>` per row, carrying the row's docs;
/// - `KEYS`, every key in table order, for the messages that list them;
/// - `TaskArgs::read`, which reads `key = value` with the row's kind into its field,
///   reporting a second occurrence of the key;
/// - `TaskArgs::task_options`, the `TaskOptions` initialiser from what each row sets.
macro_rules! options {
    ($(
        $(#[doc = $doc:literal])*
        $field:ident: $ty:ty = $key:literal, $kind:expr => $sets:expr,
    )*) => {
        /// The options given to `#[task(..)]`, one field per row of the table.
        #[derive(Default)]
        pub(crate) struct TaskArgs {
            $( $(#[doc = $doc])* pub(crate) $field: ::core::option::Option<$ty>, )*
        }

        /// Every key, in table order.
        const KEYS: &[&str] = &[$($key),*];

        impl TaskArgs {
            /// Reads `key = value` into its field; `None` when no option has this key.
            fn read(&mut self, key: &str, nv: &::syn::MetaNameValue) -> Option<::syn::Result<()>> {
                match key {
                    $(
                        $key => Some(
                            $kind.read(&nv.value, $key)
                                .and_then(|value| $crate::attr::table::set(&mut self.$field, value, &nv.path)),
                        ),
                    )*
                    _ => None,
                }
            }

            /// `#krate::TaskOptions::new()` followed by one builder call per option given.
            pub(crate) fn task_options(&self, krate: &::proc_macro2::TokenStream) -> ::proc_macro2::TokenStream {
                let mut init = $crate::attr::table::Init::default();
                $( init.push($sets, self.$field.as_ref().map(|value| $kind.expr(value, krate))); )*
                init.into_tokens(krate)
            }
        }
    };
}

pub(crate) use options;

/// What an option sets in the code `expand` writes.
#[derive(Clone, Copy)]
pub(crate) enum Sets {
    /// Nothing in `TaskOptions`: an option of the macro itself, which `expand` reads
    /// from its field (the registered name, the crate path).
    Macro,
    /// `TaskOptions::method(value)`.
    Method(&'static str),
    /// `Field(method, Struct, field)`: one field of the struct given to
    /// `TaskOptions::method`. The call is written when any of the struct's rows is
    /// given, at the place of its first row; a field not given is `Struct::DEFAULT.field`.
    Field(&'static str, &'static str, &'static str),
}

/// Stores `value` in `slot`, or reports the key's second occurrence at that key.
pub(crate) fn set<T>(slot: &mut Option<T>, value: T, path: &syn::Path) -> syn::Result<()> {
    if slot.is_some() {
        let key = path.get_ident().map(ToString::to_string).unwrap_or_default();
        return Err(syn::Error::new(path.span(), format!("`{key}` specified more than once")));
    }
    *slot = Some(value);
    Ok(())
}

/// The builder calls of the `TaskOptions` initialiser, in table order.
#[derive(Default)]
pub(crate) struct Init {
    calls: Vec<Call>,
}

enum Call {
    /// `.method(value)`.
    Value(&'static str, TokenStream),
    /// `.method(Struct { field: value, .. })`, one entry per row of the struct (`None`: not given).
    Struct { method: &'static str, ty: &'static str, fields: Vec<(&'static str, Option<TokenStream>)> },
}

impl Init {
    /// Adds what one row sets, given its value as an expression (`None`: not given).
    pub(crate) fn push(&mut self, sets: Sets, value: Option<TokenStream>) {
        match sets {
            Sets::Macro => {}
            Sets::Method(method) => {
                if let Some(value) = value {
                    self.calls.push(Call::Value(method, value));
                }
            }
            Sets::Field(method, ty, field) => {
                let group = self.calls.iter_mut().find_map(|call| match call {
                    Call::Struct { method: m, fields, .. } if *m == method => Some(fields),
                    _ => None,
                });
                match group {
                    Some(fields) => fields.push((field, value)),
                    None => self.calls.push(Call::Struct { method, ty, fields: vec![(field, value)] }),
                }
            }
        }
    }

    pub(crate) fn into_tokens(self, krate: &TokenStream) -> TokenStream {
        let ident = |name: &str| Ident::new(name, Span::call_site());
        let calls = self.calls.into_iter().filter_map(|call| match call {
            Call::Value(method, value) => {
                let method = ident(method);
                Some(quote!(.#method(#value)))
            }
            Call::Struct { fields, .. } if fields.iter().all(|(_, value)| value.is_none()) => None,
            Call::Struct { method, ty, fields } => {
                let (method, ty) = (ident(method), ident(ty));
                let default = quote!(#krate::#ty::DEFAULT);
                let fields = fields.into_iter().map(|(field, value)| {
                    let field = ident(field);
                    let value = value.unwrap_or_else(|| quote!(#default.#field));
                    quote!(#field: #value)
                });
                Some(quote!(.#method(#krate::#ty { #(#fields),* })))
            }
        });
        quote!(#krate::TaskOptions::new() #(#calls)*)
    }
}
