//! The panic boundary and the NULL checks that every exported function uses.

/// Runs `$body` and returns its value; if it panics, returns `$on_panic`
/// instead, so that no unwinding crosses into C.
macro_rules! panic_boundary {
    ($on_panic:expr, $body:block) => {
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| $body)) {
            Ok(value) => value,
            Err(_) => $on_panic,
        }
    };
}

/// Turns a `*const T` into `&T`, or returns `$on_null` from the enclosing
/// function when the pointer is NULL.
macro_rules! try_ref {
    ($pointer:expr, $on_null:expr) => {
        match unsafe { $pointer.as_ref() } {
            Some(reference) => reference,
            None => return $on_null,
        }
    };
}

/// Turns a `*mut T` into `&mut T`, or returns `$on_null` from the enclosing
/// function when the pointer is NULL.
macro_rules! try_mut {
    ($pointer:expr, $on_null:expr) => {
        match unsafe { $pointer.as_mut() } {
            Some(reference) => reference,
            None => return $on_null,
        }
    };
}

/// Turns a NUL-terminated `*const c_char` into `&str`, returning
/// `$on_null` for NULL and `$on_invalid` when the text is not UTF-8.
macro_rules! try_str {
    ($pointer:expr, $on_null:expr, $on_invalid:expr) => {{
        let pointer: *const ::std::ffi::c_char = $pointer;
        if pointer.is_null() {
            return $on_null;
        }
        match unsafe { ::std::ffi::CStr::from_ptr(pointer) }.to_str() {
            Ok(text) => text,
            Err(_) => return $on_invalid,
        }
    }};
}
