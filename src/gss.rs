//! The one module that calls GSSAPI. It implements [`SecurityContext`] for
//! initiator (client) and acceptor (server) contexts with MIT krb5 through
//! libgssapi-sys, and renders GSSAPI status codes as text.
//!
//! Credentials come from a credential cache or keytab named per connection,
//! or else from the process defaults (KRB5CCNAME, KRB5_KTNAME); nothing here
//! changes the process environment.

use crate::core::{Granted, SecurityContext, Step};
use crate::error::{Error, ErrorKind};
use libgssapi_sys as sys;
use std::ffi::{c_void, CString};
use std::ops::Range;
use std::ptr;

const GSS_S_COMPLETE: u32 = 0;
const GSS_S_CONTINUE_NEEDED: u32 = 1;
const GSS_C_GSS_CODE: i32 = 1;
const GSS_C_MECH_CODE: i32 = 2;
const GSS_C_QOP_DEFAULT: u32 = 0;
const GSS_C_INDEFINITE: u32 = 0xffff_ffff;
const GSS_C_INITIATE: i32 = 1;
const GSS_C_ACCEPT: i32 = 2;

const GSS_C_DELEG_FLAG: u32 = 1;
const GSS_C_MUTUAL_FLAG: u32 = 2;
const GSS_C_REPLAY_FLAG: u32 = 4;
const GSS_C_SEQUENCE_FLAG: u32 = 8;
const GSS_C_CONF_FLAG: u32 = 16;
const GSS_C_INTEG_FLAG: u32 = 32;

/// Returns true when `major` reports an error. Supplementary bits alone
/// (duplicate, old, unsequenced or gap token) are not errors in GSSAPI's
/// terms, but [`unwrap`] and [`unwrap_in_place`] reject them too.
fn is_error(major: u32) -> bool {
    major & 0xffff_0000 != 0
}

/// Renders a GSSAPI major and minor status as text, the way
/// gss_display_status presents them: "major text: minor text".
pub fn status_text(major: u32, minor: u32) -> String {
    let major_text = display_status(major, GSS_C_GSS_CODE);
    // MIT krb5 1.20 reports some supplementary statuses (a duplicate token)
    // with a minor status whose text is "Success", which adds nothing.
    let minor_text = match minor {
        0 => String::new(),
        _ => display_status(minor, GSS_C_MECH_CODE),
    };
    let minor_text = if minor_text == "Success" { String::new() } else { minor_text };
    match (major_text.is_empty(), minor_text.is_empty()) {
        (_, true) => format!("{major_text} (major status 0x{major:08x})"),
        (true, false) => format!("{minor_text} (minor status {minor})"),
        (false, false) => format!("{major_text}: {minor_text} (major status 0x{major:08x}, minor status {minor})"),
    }
}

fn display_status(code: u32, code_type: i32) -> String {
    let mut parts = Vec::new();
    let mut message_context: u32 = 0;

    // gss_display_status returns one line per call; message_context says
    // whether more follow. The bound guards against a looping mechanism.
    for _ in 0..8 {
        let mut minor = 0;
        let mut buffer = empty_buffer();
        let major = unsafe {
            sys::gss_display_status(
                &mut minor,
                code,
                code_type,
                ptr::null_mut(),
                &mut message_context,
                &mut buffer,
            )
        };
        if is_error(major) {
            break;
        }
        let text = unsafe { buffer_bytes(&buffer) };
        parts.push(escape_controls(&String::from_utf8_lossy(text)));
        release_buffer(&mut buffer);
        if message_context == 0 {
            break;
        }
    }
    parts.join("; ")
}

/// Replaces control characters with `\xNN`. Status text can quote names
/// that a peer chose, such as the service name in a forged ticket, and
/// terminal escape sequences from it must not reach a log or terminal.
fn escape_controls(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            escaped.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            escaped.push(c);
        }
    }
    escaped
}

fn gss_error(kind: ErrorKind, operation: &str, major: u32, minor: u32) -> Error {
    Error::new(kind, format!("GSSAPI {operation} failed: {}", status_text(major, minor)))
}

fn empty_buffer() -> sys::gss_buffer_desc {
    sys::gss_buffer_desc { length: 0, value: ptr::null_mut() }
}

/// Borrows a buffer that GSSAPI filled in.
///
/// # Safety
/// `buffer` must come from a successful GSSAPI call and not be released yet.
unsafe fn buffer_bytes(buffer: &sys::gss_buffer_desc) -> &[u8] {
    if buffer.value.is_null() || buffer.length == 0 {
        &[]
    } else {
        std::slice::from_raw_parts(buffer.value as *const u8, buffer.length)
    }
}

fn release_buffer(buffer: &mut sys::gss_buffer_desc) {
    if !buffer.value.is_null() {
        let mut minor = 0;
        unsafe { sys::gss_release_buffer(&mut minor, buffer) };
    }
}

/// Zeroes a buffer that GSSAPI filled in, then releases it.
fn zero_and_release(buffer: &mut sys::gss_buffer_desc) {
    if !buffer.value.is_null() && buffer.length > 0 {
        let bytes = unsafe { std::slice::from_raw_parts_mut(buffer.value as *mut u8, buffer.length) };
        crate::core::frame::zero(bytes);
    }
    release_buffer(buffer);
}

fn borrowed_buffer(bytes: &[u8]) -> sys::gss_buffer_desc {
    sys::gss_buffer_desc { length: bytes.len(), value: bytes.as_ptr() as *mut c_void }
}

/// A GSSAPI name.
pub struct Name(sys::gss_name_t);

impl Name {
    /// Imports a host-based service name `service@host`, the form libpq uses
    /// for the target: `krbsrvname@host`, with the host as given.
    pub fn host_based_service(service: &str, host: &str) -> Result<Name, Error> {
        let text = format!("{service}@{host}");
        let mut minor = 0;
        let mut name: sys::gss_name_t = ptr::null_mut();
        let buffer = borrowed_buffer(text.as_bytes());
        let major = unsafe {
            sys::gss_import_name(&mut minor, &buffer as *const _ as *mut _, sys::GSS_C_NT_HOSTBASED_SERVICE, &mut name)
        };
        if is_error(major) {
            return Err(Error::new(
                ErrorKind::Gss,
                format!("GSSAPI could not import the target name \"{text}\": {}", status_text(major, minor)),
            ));
        }
        Ok(Name(name))
    }

    /// Renders the name as text, such as "tester@EXAMPLE.COM".
    pub fn display(&self) -> Result<String, Error> {
        display_name(self.0)
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        if !self.0.is_null() {
            let mut minor = 0;
            unsafe { sys::gss_release_name(&mut minor, &mut self.0) };
        }
    }
}

fn display_name(name: sys::gss_name_t) -> Result<String, Error> {
    let mut minor = 0;
    let mut buffer = empty_buffer();
    let major = unsafe { sys::gss_display_name(&mut minor, name, &mut buffer, ptr::null_mut()) };
    if is_error(major) {
        return Err(gss_error(ErrorKind::Gss, "gss_display_name", major, minor));
    }
    let text = escape_controls(&String::from_utf8_lossy(unsafe { buffer_bytes(&buffer) }));
    release_buffer(&mut buffer);
    Ok(text)
}

/// A credential handle for initiating security contexts.
pub struct Credential(sys::gss_cred_id_t);

// SAFETY: the handle is owned by this value alone, and GSSAPI handles may
// move between threads. No handle is shared between threads.
unsafe impl Send for Credential {}

impl Credential {
    /// Acquires initiator credentials for the default principal, from the
    /// credential cache `ccache` when given (a cache name such as
    /// "FILE:/tmp/cc"), otherwise from the default cache. Fails with kind
    /// `NoCredentials` when there is no usable ticket.
    pub fn acquire_initiator(ccache: Option<&str>) -> Result<Credential, Error> {
        Credential::acquire(GSS_C_INITIATE, None, ccache.map(|name| ("ccache", name)))
            .map_err(|text| Error::new(ErrorKind::NoCredentials, format!("no usable Kerberos credentials: {text}")))
    }

    /// Acquires acceptor credentials from the keytab `keytab` when given
    /// (the equivalent of krb_server_keyfile), otherwise from the default
    /// keytab (KRB5_KTNAME). With `service`, only that service's keys are
    /// used; without it, any key in the keytab can accept, as in PostgreSQL.
    pub fn acquire_acceptor(keytab: Option<&str>, service: Option<&Name>) -> Result<Credential, Error> {
        Credential::acquire(GSS_C_ACCEPT, service, keytab.map(|path| ("keytab", path))).map_err(|text| {
            Error::new(
                ErrorKind::NoCredentials,
                format!("could not acquire acceptor credentials from keytab {}: {text}", keytab.unwrap_or("(default)")),
            )
        })
    }

    fn acquire(usage: i32, name: Option<&Name>, store: Option<(&str, &str)>) -> Result<Credential, String> {
        let mut minor = 0;
        let mut cred: sys::gss_cred_id_t = ptr::null_mut();
        let name = name.map_or(ptr::null_mut(), |name| name.0);
        let major = match store {
            None => unsafe {
                sys::gss_acquire_cred(
                    &mut minor,
                    name,
                    GSS_C_INDEFINITE,
                    ptr::null_mut(),
                    usage,
                    &mut cred,
                    ptr::null_mut(),
                    ptr::null_mut(),
                )
            },
            Some((key, value)) => {
                let key = CString::new(key).expect("store keys are literals without NUL");
                let value = CString::new(value).map_err(|_| format!("{} contains a NUL byte", key.to_string_lossy()))?;
                let mut element = sys::gss_key_value_element_desc { key: key.as_ptr(), value: value.as_ptr() };
                let store = sys::gss_key_value_set_desc { count: 1, elements: &mut element };
                unsafe {
                    sys::gss_acquire_cred_from(
                        &mut minor,
                        name,
                        GSS_C_INDEFINITE,
                        ptr::null_mut(),
                        usage,
                        &store,
                        &mut cred,
                        ptr::null_mut(),
                        ptr::null_mut(),
                    )
                }
            }
        };
        if is_error(major) {
            return Err(status_text(major, minor));
        }
        Ok(Credential(cred))
    }

    /// Stores these (delegated) credentials into the credential cache
    /// `ccache`, replacing its contents, without touching the default cache.
    pub fn store_into(&self, ccache: &str) -> Result<(), Error> {
        let key = CString::new("ccache").expect("literal has no NUL");
        let value = CString::new(ccache)
            .map_err(|_| Error::new(ErrorKind::InvalidParameter, "credential cache name contains a NUL byte"))?;
        let mut element = sys::gss_key_value_element_desc { key: key.as_ptr(), value: value.as_ptr() };
        let store = sys::gss_key_value_set_desc { count: 1, elements: &mut element };
        let mut minor = 0;
        let major = unsafe {
            sys::gss_store_cred_into(
                &mut minor,
                self.0,
                GSS_C_INITIATE,
                ptr::null_mut(),
                1,
                1,
                &store,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        if is_error(major) {
            return Err(gss_error(ErrorKind::Gss, "gss_store_cred_into", major, minor));
        }
        Ok(())
    }
}

impl Drop for Credential {
    fn drop(&mut self) {
        if !self.0.is_null() {
            let mut minor = 0;
            unsafe { sys::gss_release_cred(&mut minor, &mut self.0) };
        }
    }
}

/// Options for an initiator context.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// Request delegation of the client's credentials (gssdelegation=1).
    pub delegate: bool,
}

/// An initiator security context with the flags libpq requests: mutual
/// authentication, replay and sequence detection, confidentiality and
/// integrity, plus delegation on request.
pub struct ClientContext {
    context: sys::gss_ctx_id_t,
    /// Released once the context is established, as libpq does: the
    /// context no longer needs it, and it holds keytab and cache buffers.
    credential: Option<Credential>,
    target: Name,
    request_flags: u32,
    returned_flags: u32,
}

// SAFETY: the context handle is owned by this value alone and GSSAPI context
// handles may move between threads; calls on one context are serialised by
// the `&mut self` of every method that uses it.
unsafe impl Send for ClientContext {}

impl ClientContext {
    pub fn new(credential: Credential, target: Name, options: &ClientOptions) -> ClientContext {
        let mut request_flags =
            GSS_C_MUTUAL_FLAG | GSS_C_REPLAY_FLAG | GSS_C_SEQUENCE_FLAG | GSS_C_CONF_FLAG | GSS_C_INTEG_FLAG;
        if options.delegate {
            request_flags |= GSS_C_DELEG_FLAG;
        }
        ClientContext { context: ptr::null_mut(), credential: Some(credential), target, request_flags, returned_flags: 0 }
    }

    /// The raw gss_ctx_id_t, for callers that need GSSAPI calls of their own
    /// (the equivalent of libpq's PQgetgssctx). NULL before the handshake.
    pub fn raw_handle(&self) -> *mut c_void {
        self.context as *mut c_void
    }

    /// Whether the client's credentials were delegated to the server.
    pub fn credentials_delegated(&self) -> bool {
        self.returned_flags & GSS_C_DELEG_FLAG != 0
    }

    /// The principal of the client, such as "tester@EXAMPLE.COM".
    pub fn source_principal(&self) -> Result<String, Error> {
        if self.context.is_null() {
            return Err(Error::invalid_state("the GSSAPI security context is not established"));
        }
        let mut minor = 0;
        let mut name: sys::gss_name_t = ptr::null_mut();
        let major = unsafe {
            sys::gss_inquire_context(
                &mut minor,
                self.context,
                &mut name,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        if is_error(major) {
            return Err(gss_error(ErrorKind::Gss, "gss_inquire_context", major, minor));
        }
        let name = Name(name);
        name.display()
    }
}

impl SecurityContext for ClientContext {
    fn step(&mut self, input: Option<&[u8]>) -> Result<Step, Error> {
        let mut minor = 0;
        let input_buffer = input.map(borrowed_buffer);
        let input_ptr = match &input_buffer {
            Some(buffer) => buffer as *const _ as *mut sys::gss_buffer_desc,
            None => ptr::null_mut(),
        };
        let mut output = empty_buffer();
        let mut returned_flags = 0;
        let major = unsafe {
            sys::gss_init_sec_context(
                &mut minor,
                self.credential.as_ref().map_or(ptr::null_mut(), |credential| credential.0),
                &mut self.context,
                self.target.0,
                ptr::null_mut(),
                self.request_flags,
                0,
                ptr::null_mut(),
                input_ptr,
                ptr::null_mut(),
                &mut output,
                &mut returned_flags,
                ptr::null_mut(),
            )
        };
        let token = unsafe { buffer_bytes(&output) }.to_vec();
        zero_and_release(&mut output);

        if is_error(major) {
            return Err(gss_error(ErrorKind::Gss, "gss_init_sec_context", major, minor));
        }
        if major & GSS_S_CONTINUE_NEEDED != 0 {
            return Ok(Step { token, complete: None });
        }
        if major != GSS_S_COMPLETE {
            return Err(gss_error(ErrorKind::Gss, "gss_init_sec_context", major, minor));
        }

        self.returned_flags = returned_flags;
        self.credential = None;
        let granted = Granted {
            mutual_authentication: returned_flags & GSS_C_MUTUAL_FLAG != 0,
            confidentiality: returned_flags & GSS_C_CONF_FLAG != 0,
            integrity: returned_flags & GSS_C_INTEG_FLAG != 0,
            delegation: returned_flags & GSS_C_DELEG_FLAG != 0,
        };
        Ok(Step { token, complete: Some(granted) })
    }

    fn wrap(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        wrap(self.context, plaintext, out)
    }

    fn unwrap(&mut self, token: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        unwrap(self.context, token, out)
    }

    fn unwrap_in_place(&mut self, token: &mut [u8]) -> Result<Range<usize>, Error> {
        unwrap_in_place(self.context, token)
    }

    fn max_plaintext(&mut self, max_token_size: usize) -> Result<usize, Error> {
        wrap_size_limit(self.context, max_token_size)
    }
}

impl Drop for ClientContext {
    fn drop(&mut self) {
        delete_context(&mut self.context);
    }
}

/// An acceptor security context. It accepts any principal in the keytab
/// unless its credential was acquired for one service.
pub struct ServerContext {
    context: sys::gss_ctx_id_t,
    credential: Option<Credential>,
    source: Option<Name>,
    delegated: Option<Credential>,
    returned_flags: u32,
}

// SAFETY: as for ClientContext; the delegated credential is owned alone.
unsafe impl Send for ServerContext {}

impl ServerContext {
    pub fn new(credential: Option<Credential>) -> ServerContext {
        ServerContext { context: ptr::null_mut(), credential, source: None, delegated: None, returned_flags: 0 }
    }

    pub fn raw_handle(&self) -> *mut c_void {
        self.context as *mut c_void
    }

    /// The authenticated client principal, such as "alice@EXAMPLE.COM".
    pub fn source_principal(&self) -> Result<String, Error> {
        match &self.source {
            Some(name) => name.display(),
            None => Err(Error::invalid_state("the GSSAPI security context is not established")),
        }
    }

    /// Credentials the client delegated, if any.
    pub fn delegated_credential(&self) -> Option<&Credential> {
        self.delegated.as_ref()
    }
}

impl SecurityContext for ServerContext {
    fn step(&mut self, input: Option<&[u8]>) -> Result<Step, Error> {
        let Some(input) = input else {
            return Err(Error::invalid_state("an acceptor step needs the client's token"));
        };
        let mut minor = 0;
        let input_buffer = borrowed_buffer(input);
        let mut output = empty_buffer();
        let mut source: sys::gss_name_t = ptr::null_mut();
        let mut returned_flags = 0;
        let mut delegated: sys::gss_cred_id_t = ptr::null_mut();
        let credential = self.credential.as_ref().map_or(ptr::null_mut(), |credential| credential.0);
        let major = unsafe {
            sys::gss_accept_sec_context(
                &mut minor,
                &mut self.context,
                credential,
                &input_buffer as *const _ as *mut _,
                ptr::null_mut(),
                &mut source,
                ptr::null_mut(),
                &mut output,
                &mut returned_flags,
                ptr::null_mut(),
                &mut delegated,
            )
        };
        let token = unsafe { buffer_bytes(&output) }.to_vec();
        zero_and_release(&mut output);
        let source = if source.is_null() { None } else { Some(Name(source)) };
        let delegated = if delegated.is_null() { None } else { Some(Credential(delegated)) };

        if is_error(major) {
            return Err(gss_error(ErrorKind::Gss, "gss_accept_sec_context", major, minor));
        }
        if major & GSS_S_CONTINUE_NEEDED != 0 {
            return Ok(Step { token, complete: None });
        }
        if major != GSS_S_COMPLETE {
            return Err(gss_error(ErrorKind::Gss, "gss_accept_sec_context", major, minor));
        }

        self.returned_flags = returned_flags;
        self.source = source;
        self.delegated = delegated;
        let granted = Granted {
            mutual_authentication: returned_flags & GSS_C_MUTUAL_FLAG != 0,
            confidentiality: returned_flags & GSS_C_CONF_FLAG != 0,
            integrity: returned_flags & GSS_C_INTEG_FLAG != 0,
            delegation: self.delegated.is_some(),
        };
        Ok(Step { token, complete: Some(granted) })
    }

    fn wrap(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        wrap(self.context, plaintext, out)
    }

    fn unwrap(&mut self, token: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        unwrap(self.context, token, out)
    }

    fn unwrap_in_place(&mut self, token: &mut [u8]) -> Result<Range<usize>, Error> {
        unwrap_in_place(self.context, token)
    }

    fn max_plaintext(&mut self, max_token_size: usize) -> Result<usize, Error> {
        wrap_size_limit(self.context, max_token_size)
    }
}

impl Drop for ServerContext {
    fn drop(&mut self) {
        delete_context(&mut self.context);
    }
}

/// Either role's context, so that one packet layer serves both.
pub enum GssContext {
    Client(ClientContext),
    Server(ServerContext),
}

impl GssContext {
    pub fn raw_handle(&self) -> *mut c_void {
        match self {
            GssContext::Client(context) => context.raw_handle(),
            GssContext::Server(context) => context.raw_handle(),
        }
    }

    pub fn source_principal(&self) -> Result<String, Error> {
        match self {
            GssContext::Client(context) => context.source_principal(),
            GssContext::Server(context) => context.source_principal(),
        }
    }

    /// For an initiator, whether its credentials were delegated; for an
    /// acceptor, whether it received delegated credentials.
    pub fn credentials_delegated(&self) -> bool {
        match self {
            GssContext::Client(context) => context.credentials_delegated(),
            GssContext::Server(context) => context.delegated_credential().is_some(),
        }
    }

    pub fn delegated_credential(&self) -> Option<&Credential> {
        match self {
            GssContext::Client(_) => None,
            GssContext::Server(context) => context.delegated_credential(),
        }
    }

    fn inner(&mut self) -> &mut dyn SecurityContext {
        match self {
            GssContext::Client(context) => context,
            GssContext::Server(context) => context,
        }
    }
}

impl SecurityContext for GssContext {
    fn step(&mut self, input: Option<&[u8]>) -> Result<Step, Error> {
        self.inner().step(input)
    }

    fn wrap(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        self.inner().wrap(plaintext, out)
    }

    fn unwrap(&mut self, token: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        self.inner().unwrap(token, out)
    }

    fn unwrap_in_place(&mut self, token: &mut [u8]) -> Result<Range<usize>, Error> {
        self.inner().unwrap_in_place(token)
    }

    fn max_plaintext(&mut self, max_token_size: usize) -> Result<usize, Error> {
        self.inner().max_plaintext(max_token_size)
    }
}

fn delete_context(context: &mut sys::gss_ctx_id_t) {
    if !context.is_null() {
        let mut minor = 0;
        unsafe { sys::gss_delete_sec_context(&mut minor, context, ptr::null_mut()) };
        *context = ptr::null_mut();
    }
}

/// Wraps `plaintext` with confidentiality and appends the token to `out`.
///
/// gss_wrap_iov encrypts in place inside `out`, laid out as header, data,
/// padding and trailer, which concatenated form the same token gss_wrap
/// produces; this avoids gss_wrap's allocated output buffer and a copy.
pub(crate) fn wrap(context: sys::gss_ctx_id_t, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    let mut minor = 0;
    let mut conf_state = 0;
    let mut iov = [
        iov_buffer(sys::GSS_IOV_BUFFER_TYPE_HEADER, ptr::null_mut(), 0),
        iov_buffer(sys::GSS_IOV_BUFFER_TYPE_DATA, plaintext.as_ptr() as *mut u8, plaintext.len()),
        iov_buffer(sys::GSS_IOV_BUFFER_TYPE_PADDING, ptr::null_mut(), 0),
        iov_buffer(sys::GSS_IOV_BUFFER_TYPE_TRAILER, ptr::null_mut(), 0),
    ];
    let major = unsafe {
        sys::gss_wrap_iov_length(
            &mut minor,
            context,
            1,
            GSS_C_QOP_DEFAULT,
            &mut conf_state,
            iov.as_mut_ptr(),
            iov.len() as i32,
        )
    };
    if major != GSS_S_COMPLETE {
        return Err(gss_error(ErrorKind::Gss, "gss_wrap_iov_length", major, minor));
    }

    let header = iov[0].buffer.length;
    let padding = iov[2].buffer.length;
    let trailer = iov[3].buffer.length;
    let start = out.len();
    out.resize(start + header + plaintext.len() + padding + trailer, 0);
    let token = &mut out[start..];
    token[header..header + plaintext.len()].copy_from_slice(plaintext);

    let base = token.as_mut_ptr();
    // SAFETY: every offset stays within `token`, whose length is the sum of
    // the four sizes.
    unsafe {
        iov[0].buffer.value = base.cast();
        iov[1].buffer.value = base.add(header).cast();
        iov[2].buffer.value = base.add(header + plaintext.len()).cast();
        iov[3].buffer.value = base.add(header + plaintext.len() + padding).cast();
    }
    let major = unsafe {
        sys::gss_wrap_iov(
            &mut minor,
            context,
            1,
            GSS_C_QOP_DEFAULT,
            &mut conf_state,
            iov.as_mut_ptr(),
            iov.len() as i32,
        )
    };
    if major != GSS_S_COMPLETE || conf_state == 0 {
        // Without confidentiality the token carries the plaintext itself.
        crate::core::frame::zero(&mut out[start..]);
        out.truncate(start);
        if major != GSS_S_COMPLETE {
            return Err(gss_error(ErrorKind::Gss, "gss_wrap_iov", major, minor));
        }
        return Err(Error::new(
            ErrorKind::NoConfidentiality,
            "GSSAPI wrapped a packet without confidentiality (conf_state 0); it was not sent",
        ));
    }
    Ok(())
}

fn iov_buffer(kind: u32, value: *mut u8, length: usize) -> sys::gss_iov_buffer_desc {
    sys::gss_iov_buffer_desc { type_: kind, buffer: sys::gss_buffer_desc { length, value: value.cast() } }
}

/// Unwraps `token` and appends its plaintext to `out`. Every status other
/// than GSS_S_COMPLETE is an error, including the supplementary duplicate,
/// old, unsequenced and gap bits: with replay and sequence detection
/// requested, a packet that is replayed, reordered or lost ends the stream.
pub(crate) fn unwrap(context: sys::gss_ctx_id_t, token: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    let mut minor = 0;
    let input = borrowed_buffer(token);
    let mut conf_state = 0;
    let mut qop = 0;
    let mut output = empty_buffer();
    let major = unsafe {
        sys::gss_unwrap(&mut minor, context, &input as *const _ as *mut _, &mut output, &mut conf_state, &mut qop)
    };
    if major != GSS_S_COMPLETE {
        zero_and_release(&mut output);
        return Err(gss_error(ErrorKind::Gss, "gss_unwrap", major, minor));
    }
    if conf_state == 0 {
        zero_and_release(&mut output);
        return Err(Error::new(
            ErrorKind::NoConfidentiality,
            "received a GSSAPI packet without confidentiality (conf_state 0); its contents were discarded \
             and the connection is closed",
        ));
    }
    out.extend_from_slice(unsafe { buffer_bytes(&output) });
    zero_and_release(&mut output);
    Ok(())
}

/// Unwraps `token` in place with gss_unwrap_iov and returns the range of
/// `token` that holds the plaintext, with the same checks as [`unwrap`].
/// This avoids the allocation and copy of gss_unwrap's output buffer.
pub(crate) fn unwrap_in_place(context: sys::gss_ctx_id_t, token: &mut [u8]) -> Result<Range<usize>, Error> {
    let mut minor = 0;
    let mut conf_state = 0;
    let mut qop = 0;
    let mut iov = [
        sys::gss_iov_buffer_desc {
            type_: sys::GSS_IOV_BUFFER_TYPE_STREAM,
            buffer: sys::gss_buffer_desc { length: token.len(), value: token.as_mut_ptr().cast() },
        },
        sys::gss_iov_buffer_desc { type_: sys::GSS_IOV_BUFFER_TYPE_DATA, buffer: empty_buffer() },
    ];
    let major = unsafe {
        sys::gss_unwrap_iov(&mut minor, context, &mut conf_state, &mut qop, iov.as_mut_ptr(), iov.len() as i32)
    };
    if major != GSS_S_COMPLETE {
        return Err(gss_error(ErrorKind::Gss, "gss_unwrap_iov", major, minor));
    }
    if conf_state == 0 {
        return Err(Error::new(
            ErrorKind::NoConfidentiality,
            "received a GSSAPI packet without confidentiality (conf_state 0); its contents were discarded \
             and the connection is closed",
        ));
    }

    // With a STREAM buffer, the mechanism decrypts in place and points the
    // DATA buffer into the token; anything else would be a mechanism bug.
    let data = &iov[1].buffer;
    let start = (data.value as usize).wrapping_sub(token.as_ptr() as usize);
    if data.length > 0 && (data.value.is_null() || start > token.len() || data.length > token.len() - start) {
        return Err(Error::new(
            ErrorKind::Gss,
            "gss_unwrap_iov returned plaintext outside the token it was given",
        ));
    }
    if data.length == 0 {
        return Ok(0..0);
    }
    Ok(start..start + data.length)
}

pub(crate) fn wrap_size_limit(context: sys::gss_ctx_id_t, max_token_size: usize) -> Result<usize, Error> {
    let mut minor = 0;
    let mut max_input = 0;
    let requested = u32::try_from(max_token_size).unwrap_or(u32::MAX);
    let major =
        unsafe { sys::gss_wrap_size_limit(&mut minor, context, 1, GSS_C_QOP_DEFAULT, requested, &mut max_input) };
    if major != GSS_S_COMPLETE {
        return Err(gss_error(ErrorKind::Gss, "gss_wrap_size_limit", major, minor));
    }
    Ok(max_input as usize)
}
