//! A connection in either role: configuration, negotiation, the packet layer
//! and a transport, driven like libpq's PQconnectPoll. The initiator (client)
//! sends GSSENCRequest; the acceptor (server, proxy, pooler) reads the
//! client's first packet and answers it.

use crate::config::{Config, GssEncMode, Params};
use crate::core::frame::ZeroOnDrop;
use crate::core::startup::{parse_startup, startup_missing, StartupKind};
use crate::core::{Acceptance, Negotiation, NegotiationStatus, Session};
use crate::error::{Error, ErrorKind};
use crate::gss::{ClientContext, ClientOptions, Credential, GssContext, Name, ServerContext};
use crate::io::{BufferTransport, Transport};
use std::io;

/// What a poll step asks of the caller; numerically equal to libpq's
/// PostgresPollingStatusType, so a PQconnectPoll loop can drive it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polling {
    /// Negotiation failed; the error message says why.
    Failed = 0,
    /// Wait until the socket is readable, then poll again.
    Reading = 1,
    /// Wait until the socket is writable, then poll again.
    Writing = 2,
    /// Negotiation is over; see [`Connection::outcome`] for its result.
    Ok = 3,
}

/// How negotiation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Negotiation has not ended yet.
    Pending,
    /// The connection is GSSAPI-encrypted.
    Encrypted,
    /// The server answered 'N'; under gssencmode=prefer the socket carries
    /// plaintext and the caller continues with its StartupMessage.
    ServerDeclined,
    /// No usable Kerberos credentials: under gssencmode=prefer nothing was
    /// sent, as in libpq, and the socket is untouched.
    NoCredentials,
    /// gssencmode=disable: nothing was sent.
    Disabled,
    /// Negotiation failed; the socket is not usable.
    Failed,
    /// Acceptor: the client's first packet was not a GSSENCRequest. The
    /// packet is in [`Connection::startup_packet`]; the socket carries
    /// plaintext.
    NotRequested,
    /// Acceptor: the client's GSSENCRequest was declined with 'N' and the
    /// client's next packet is in [`Connection::startup_packet`].
    Declined,
}

enum State {
    New,
    Negotiating(Box<Negotiation<GssContext>>),
    ReadingStartup { received: ZeroOnDrop, after_decline: bool },
    Accepting(Box<Acceptance<GssContext>>),
    Encrypted(Box<Session<GssContext>>),
    Plaintext,
    Failed,
}

/// Settings of an acceptor connection.
#[derive(Clone, Debug, Default)]
pub struct AcceptorSettings {
    /// Keytab to accept with, the equivalent of krb_server_keyfile; the
    /// default keytab (KRB5_KTNAME) when unset.
    pub keytab: Option<String>,
    /// Host-based service name, such as "postgres@db.example.com", whose
    /// keys alone may accept; any key in the keytab when unset.
    pub service: Option<String>,
    /// Answer 'N' to GSSENCRequest instead of 'G'.
    pub decline: bool,
}

/// The first packet an acceptor read, kept for the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartupPacket {
    pub kind: StartupKind,
    /// The packet, followed by any bytes the client sent after it. It may
    /// hold a user and database name or a CancelRequest's secret key, so it
    /// is zeroed when dropped.
    pub bytes: ZeroOnDrop,
    /// Length of the packet itself at the start of `bytes`.
    pub length: usize,
}

enum Role {
    Initiator,
    Acceptor(AcceptorSettings),
}

/// Bytes requested from the transport per receive during negotiation. The
/// 'G' response is read with this buffer too, so that bytes injected right
/// behind it are seen and rejected.
const NEGOTIATION_RECEIVE_SIZE: usize = 16 * 1024;

/// A client connection on a transport that the caller owns.
pub struct Connection {
    role: Role,
    params: Params,
    /// The resolved parameters; set when negotiation starts.
    config: Config,
    transport: Option<Box<dyn Transport>>,
    state: State,
    outcome: Outcome,
    last_error: Option<Error>,
    /// A note on how negotiation ended without encryption under `prefer`.
    notice: Option<String>,
    startup: Option<StartupPacket>,
    /// The first parameter error; negotiation refuses to start after one.
    rejected_parameter: Option<Error>,
}

impl Connection {
    /// Creates a connection with the given explicit parameters; the PG*
    /// environment variables supply the others when negotiation starts.
    pub fn new(params: Params) -> Connection {
        Connection::with_role(Role::Initiator, params)
    }

    /// Creates an acceptor connection.
    pub fn new_acceptor(settings: AcceptorSettings) -> Connection {
        Connection::with_role(Role::Acceptor(settings), Params::new())
    }

    fn with_role(role: Role, params: Params) -> Connection {
        Connection {
            role,
            params,
            config: Config::default(),
            transport: None,
            state: State::New,
            outcome: Outcome::Pending,
            last_error: None,
            notice: None,
            startup: None,
            rejected_parameter: None,
        }
    }

    pub fn is_acceptor(&self) -> bool {
        matches!(self.role, Role::Acceptor(_))
    }

    /// Changes acceptor settings; only for an acceptor, before it starts.
    pub fn acceptor_settings_mut(&mut self) -> Result<&mut AcceptorSettings, Error> {
        self.check_new("acceptor settings")?;
        match &mut self.role {
            Role::Acceptor(settings) => Ok(settings),
            Role::Initiator => Err(Error::invalid_state("this is a client connection, not an acceptor")),
        }
    }

    /// The client's first packet (or its packet after a declined
    /// GSSENCRequest), when it was not a GSSENCRequest.
    pub fn startup_packet(&self) -> Option<&StartupPacket> {
        self.startup.as_ref()
    }

    /// The resolved parameters; built-in defaults until negotiation starts.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Sets one parameter by its libpq name; only before negotiation starts.
    pub fn set_param(&mut self, key: &str, value: &str) -> Result<(), Error> {
        self.check_new("parameters")?;
        let result = self.params.set(key, value);
        result.map_err(|err| self.reject_parameter(err))
    }

    /// Takes the parameters of a libpq connection string that this library
    /// uses; only before negotiation starts.
    pub fn set_conninfo(&mut self, conninfo: &str) -> Result<(), Error> {
        self.check_new("parameters")?;
        let result = self.params.apply_conninfo(conninfo);
        result.map_err(|err| self.reject_parameter(err))
    }

    /// Records a rejected parameter. As in libpq, a connection whose
    /// parameters were rejected does not connect: negotiating with the
    /// defaults instead could turn gssencmode=require into plaintext.
    fn reject_parameter(&mut self, err: Error) -> Error {
        if self.rejected_parameter.is_none() {
            self.rejected_parameter = Some(err.clone());
        }
        self.record(err)
    }

    fn check_new(&mut self, what: &str) -> Result<(), Error> {
        match self.state {
            State::New => Ok(()),
            _ => Err(self.record(Error::invalid_state(format!("{what} cannot change after negotiation has started")))),
        }
    }

    /// Sets the transport; only before negotiation starts.
    pub fn set_transport(&mut self, transport: Box<dyn Transport>) -> Result<(), Error> {
        self.check_new("the transport")?;
        self.transport = Some(transport);
        Ok(())
    }

    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// The last error, or, after a fallback to plaintext under `prefer`,
    /// the note that says why the connection is not encrypted.
    pub fn error_message(&self) -> Option<&str> {
        match &self.last_error {
            Some(err) => Some(err.message()),
            None => self.notice.as_deref(),
        }
    }

    pub fn last_error(&self) -> Option<&Error> {
        self.last_error.as_ref()
    }

    pub fn encryption_in_use(&self) -> bool {
        matches!(self.state, State::Encrypted(_))
    }

    fn context(&self) -> Option<&GssContext> {
        match &self.state {
            State::Negotiating(negotiation) => Some(negotiation.context()),
            State::Accepting(acceptance) => Some(acceptance.context()),
            State::Encrypted(session) => Some(session.context()),
            _ => None,
        }
    }

    /// The raw gss_ctx_id_t, or NULL when there is none.
    pub fn gss_context(&self) -> *mut std::ffi::c_void {
        self.context().map_or(std::ptr::null_mut(), |context| context.raw_handle())
    }

    /// Stores the credentials a client delegated into the credential cache
    /// `ccache` (acceptor only).
    pub fn store_delegated_credentials(&self, ccache: &str) -> Result<(), Error> {
        match self.context().and_then(|context| context.delegated_credential()) {
            Some(credential) => credential.store_into(ccache),
            None => Err(Error::invalid_state("the client delegated no credentials on this connection")),
        }
    }

    pub fn client_principal(&self) -> Result<String, Error> {
        match &self.state {
            State::Encrypted(session) => session.context().source_principal(),
            _ => Err(Error::invalid_state("the connection is not GSSAPI-encrypted")),
        }
    }

    pub fn credentials_delegated(&self) -> bool {
        self.context().is_some_and(|context| context.credentials_delegated())
    }

    /// Largest plaintext carried by one packet; 0 when not encrypted.
    pub fn max_plaintext(&self) -> usize {
        match &self.state {
            State::Encrypted(session) => session.max_plaintext(),
            _ => 0,
        }
    }

    /// Bytes a read can act on without touching the transport: decrypted
    /// bytes, plus received bytes that form complete packets.
    pub fn pending(&self) -> usize {
        match &self.state {
            State::Encrypted(session) => session.pending_plaintext() + session.pending_complete_packets(),
            _ => 0,
        }
    }

    /// The in-memory queues, when the transport is a [`BufferTransport`].
    pub fn buffers(&mut self) -> Option<&mut BufferTransport> {
        self.transport.as_mut().and_then(|transport| transport.as_buffers())
    }

    /// Minimum number of bytes the connection needs from the network to make
    /// progress, beyond what it has already received: 1 while waiting for
    /// the response byte, then the rest of the current packet. 0 when no
    /// read is pending (before negotiation, after a fallback, or when
    /// decrypted bytes are buffered).
    pub fn wanted(&mut self) -> usize {
        let needed = match &self.state {
            State::Negotiating(negotiation) if negotiation.status() == NegotiationStatus::WantRead => {
                negotiation.wanted()
            }
            State::Accepting(acceptance) if acceptance.status() == NegotiationStatus::WantRead => acceptance.wanted(),
            State::ReadingStartup { received, .. } => startup_missing(received),
            State::Encrypted(session) if session.pending_plaintext() == 0 => session.wanted().unwrap_or(0),
            _ => 0,
        };
        let fed = self.buffers().map_or(0, |buffers| buffers.inbound_len());
        needed.saturating_sub(fed)
    }

    /// Advances negotiation as far as the transport allows.
    pub fn connect_poll(&mut self) -> Polling {
        match self.poll_inner() {
            Ok(polling) => polling,
            Err(err) => {
                self.fail(err);
                Polling::Failed
            }
        }
    }

    fn poll_inner(&mut self) -> Result<Polling, Error> {
        loop {
            match &mut self.state {
                State::New => match self.role {
                    Role::Initiator => self.start()?,
                    Role::Acceptor(_) => {
                        self.check_transport()?;
                        self.state = State::ReadingStartup { received: ZeroOnDrop::new(), after_decline: false };
                    }
                },
                State::ReadingStartup { .. } => {
                    if let Some(polling) = self.poll_startup()? {
                        return Ok(polling);
                    }
                }
                State::Accepting(acceptance) => {
                    let transport = self.transport.as_mut().expect("checked when the acceptor started");
                    match acceptance.status() {
                        NegotiationStatus::WantWrite => match transport.send(acceptance.output()) {
                            Ok(0) => return Err(Error::new(ErrorKind::Io, "could not send to the client: the transport accepted 0 bytes")),
                            Ok(sent) => acceptance.consume_output(sent),
                            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(Polling::Writing),
                            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                            Err(err) => return Err(Error::io("accepting GSSAPI encryption", &err)),
                        },
                        NegotiationStatus::WantRead => {
                            let mut buffer = ZeroOnDrop::zeroed(NEGOTIATION_RECEIVE_SIZE);
                            let result = transport.recv(&mut buffer);
                            let outcome = match result {
                                Ok(0) => Err(acceptance.receive_eof()),
                                Ok(received) => acceptance.receive(&buffer[..received]),
                                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(Polling::Reading),
                                Err(err) if err.kind() == io::ErrorKind::Interrupted => Ok(()),
                                Err(err) => Err(Error::io("accepting GSSAPI encryption", &err)),
                            };
                            outcome?;
                        }
                        NegotiationStatus::Established => {
                            let State::Accepting(acceptance) = std::mem::replace(&mut self.state, State::Failed) else {
                                unreachable!("matched Accepting above");
                            };
                            let (context, decoder, _granted) = acceptance.into_established()?;
                            self.start_session(Session::new(context, decoder, "client")?);
                            return Ok(Polling::Ok);
                        }
                        NegotiationStatus::Declined => {
                            self.state = State::ReadingStartup { received: ZeroOnDrop::new(), after_decline: true };
                        }
                        NegotiationStatus::Failed => {
                            return Err(Error::invalid_state("GSSAPI negotiation already failed"));
                        }
                    }
                }
                State::Negotiating(negotiation) => {
                    let transport = self.transport.as_mut().expect("start() checked the transport");
                    match negotiation.status() {
                        NegotiationStatus::WantWrite => match transport.send(negotiation.output()) {
                            Ok(0) => return Err(Error::new(ErrorKind::Io, "could not send GSSENCRequest: the transport accepted 0 bytes")),
                            Ok(sent) => negotiation.consume_output(sent),
                            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(Polling::Writing),
                            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                            Err(err) => return Err(Error::io("negotiating GSSAPI encryption", &err)),
                        },
                        NegotiationStatus::WantRead => {
                            let mut buffer = ZeroOnDrop::zeroed(NEGOTIATION_RECEIVE_SIZE);
                            let result = transport.recv(&mut buffer);
                            let outcome = match result {
                                Ok(0) => Err(negotiation.receive_eof()),
                                Ok(received) => negotiation.receive(&buffer[..received]),
                                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(Polling::Reading),
                                Err(err) if err.kind() == io::ErrorKind::Interrupted => Ok(()),
                                Err(err) => Err(Error::io("negotiating GSSAPI encryption", &err)),
                            };
                            outcome?;
                        }
                        NegotiationStatus::Established => {
                            let State::Negotiating(negotiation) = std::mem::replace(&mut self.state, State::Failed) else {
                                unreachable!("matched Negotiating above");
                            };
                            let (context, decoder, _granted) = negotiation.into_established()?;
                            self.start_session(Session::new(context, decoder, "server")?);
                            return Ok(Polling::Ok);
                        }
                        NegotiationStatus::Declined => {
                            if self.config.gssencmode == GssEncMode::Require {
                                return Err(Error::new(
                                    ErrorKind::ServerDeclined,
                                    "server does not support GSSAPI encryption: it declined GSSENCRequest ('N'), \
                                     and gssencmode is \"require\"",
                                ));
                            }
                            self.fall_back(
                                Outcome::ServerDeclined,
                                "server declined GSSAPI encryption ('N'); the socket is still usable in plaintext \
                                 for a StartupMessage or an SSLRequest"
                                    .to_string(),
                            );
                            return Ok(Polling::Ok);
                        }
                        NegotiationStatus::Failed => {
                            return Err(Error::invalid_state("GSSAPI negotiation already failed"));
                        }
                    }
                }
                State::Encrypted(_) | State::Plaintext => return Ok(Polling::Ok),
                State::Failed => return Ok(Polling::Failed),
            }
        }
    }

    fn check_transport(&self) -> Result<(), Error> {
        match self.transport {
            Some(_) => Ok(()),
            None => Err(Error::invalid_state("no transport: set a socket, callbacks or buffers first")),
        }
    }

    /// Switches to the packet layer once the handshake is complete.
    fn start_session(&mut self, session: Session<GssContext>) {
        self.state = State::Encrypted(Box::new(session));
        self.outcome = Outcome::Encrypted;
        if let Some(buffers) = self.buffers() {
            buffers.end_negotiation();
        }
    }

    /// Reads the client's first packet. Returns a polling status to return,
    /// or `None` when the state changed and polling goes on.
    fn poll_startup(&mut self) -> Result<Option<Polling>, Error> {
        let State::ReadingStartup { received, after_decline } = &mut self.state else {
            unreachable!("called in ReadingStartup only");
        };
        let after_decline = *after_decline;

        let Some((kind, length)) = parse_startup(received)? else {
            let transport = self.transport.as_mut().expect("checked when the acceptor started");
            let mut buffer = ZeroOnDrop::zeroed(NEGOTIATION_RECEIVE_SIZE);
            match transport.recv(&mut buffer) {
                Ok(0) => {
                    return Err(Error::new(
                        ErrorKind::UnexpectedEof,
                        format!(
                            "client closed the connection before sending a complete startup packet ({} bytes received)",
                            received.len()
                        ),
                    ))
                }
                Ok(count) => received.extend_from_slice(&buffer[..count]),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(Some(Polling::Reading)),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(Error::io("reading the client's startup packet", &err)),
            }
            return Ok(None);
        };

        if kind != StartupKind::GssEncRequest {
            let bytes = std::mem::take(received);
            self.startup = Some(StartupPacket { kind, bytes, length });
            self.outcome = if after_decline { Outcome::Declined } else { Outcome::NotRequested };
            self.state = State::Plaintext;
            return Ok(Some(Polling::Ok));
        }
        if after_decline {
            return Err(Error::new(
                ErrorKind::InvalidStartupPacket,
                "client sent GSSENCRequest again after it was declined",
            ));
        }
        if received.len() > length {
            return Err(Error::new(
                ErrorKind::PlaintextInjection,
                format!(
                    "received {} bytes after GSSENCRequest, before the server answered (a pipelined \
                     StartupMessage or injected plaintext); they were discarded and the connection is closed",
                    received.len() - length
                ),
            ));
        }

        let Role::Acceptor(settings) = &self.role else {
            unreachable!("only acceptors read startup packets");
        };
        let acceptance = if settings.decline {
            Acceptance::new(GssContext::Server(ServerContext::new(None)), false)
        } else {
            let service = match &settings.service {
                Some(service) => {
                    let (name, host) = service.split_once('@').ok_or_else(|| {
                        Error::new(
                            ErrorKind::InvalidParameter,
                            format!("invalid service name \"{service}\"; expected service@host, such as postgres@db.example.com"),
                        )
                    })?;
                    Some(Name::host_based_service(name, host)?)
                }
                None => None,
            };
            let credential = Credential::acquire_acceptor(settings.keytab.as_deref(), service.as_ref())?;
            Acceptance::new(GssContext::Server(ServerContext::new(Some(credential))), true)
        };
        self.state = State::Accepting(Box::new(acceptance));
        Ok(None)
    }

    /// Decides whether to send GSSENCRequest, and prepares the context.
    fn start(&mut self) -> Result<(), Error> {
        if let Some(err) = &self.rejected_parameter {
            return Err(Error::new(
                ErrorKind::InvalidParameter,
                format!("not connecting because a parameter was rejected: {}", err.message()),
            ));
        }
        self.check_transport()?;
        self.config = self.params.resolve(|name| std::env::var(name).ok())?;
        if self.config.gssencmode == GssEncMode::Disable {
            self.fall_back(Outcome::Disabled, "gssencmode is \"disable\"; GSSENCRequest was not sent".to_string());
            return Ok(());
        }

        let Some(host) = self.config.host.clone() else {
            return Err(Error::new(
                ErrorKind::HostMissing,
                "host is not set; it is needed to build the GSSAPI target name krbsrvname@host",
            ));
        };

        let credential = match Credential::acquire_initiator(self.config.ccache.as_deref()) {
            Ok(credential) => credential,
            Err(err) if self.config.gssencmode == GssEncMode::Prefer => {
                self.fall_back(
                    Outcome::NoCredentials,
                    format!("{}; GSSENCRequest was not sent and the socket is untouched", err.message()),
                );
                return Ok(());
            }
            Err(err) => {
                return Err(Error::new(
                    ErrorKind::NoCredentials,
                    format!("gssencmode is \"require\", but there are {}", lowercase_first(err.message())),
                ))
            }
        };

        let target = Name::host_based_service(&self.config.krbsrvname, &host)?;
        let options = ClientOptions { delegate: self.config.gssdelegation };
        let context = ClientContext::new(credential, target, &options);
        self.state = State::Negotiating(Box::new(Negotiation::new(GssContext::Client(context))));
        Ok(())
    }

    fn fall_back(&mut self, outcome: Outcome, notice: String) {
        self.state = State::Plaintext;
        self.outcome = outcome;
        self.notice = Some(notice);
        self.last_error = None;
    }

    /// Reads plaintext: decrypted data on an encrypted connection, the raw
    /// stream after a fallback to plaintext.
    pub fn read(&mut self, out: &mut [u8]) -> Result<usize, Error> {
        let result = match (&mut self.state, self.transport.as_mut()) {
            (State::Encrypted(session), Some(transport)) => session.read_with(out, |buf| transport.recv(buf)),
            (State::Plaintext, Some(transport)) => {
                transport.recv(out).map_err(|err| plaintext_io_error("receiving", &err))
            }
            _ => Err(self.not_ready()),
        };
        self.keep_error(result)
    }

    /// Writes plaintext, with the retry contract of [`Session::write_with`]
    /// on an encrypted connection.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, Error> {
        let result = match (&mut self.state, self.transport.as_mut()) {
            (State::Encrypted(session), Some(transport)) => session.write_with(data, |buf| transport.send(buf)),
            (State::Plaintext, Some(transport)) => {
                transport.send(data).map_err(|err| plaintext_io_error("sending", &err))
            }
            _ => Err(self.not_ready()),
        };
        self.keep_error(result)
    }

    fn not_ready(&self) -> Error {
        match self.state {
            State::Failed => Error::invalid_state(format!(
                "the connection failed and cannot be used: {}",
                self.last_error.as_ref().map_or("negotiation failed", |err| err.message())
            )),
            _ => Error::invalid_state("negotiation has not finished: call the poll function until it returns OK"),
        }
    }

    fn keep_error(&mut self, result: Result<usize, Error>) -> Result<usize, Error> {
        match result {
            Err(err) if err.kind() != ErrorKind::WouldBlock => Err(self.record(err)),
            other => other,
        }
    }

    /// Makes `err` the connection's last error, for errors found outside
    /// the connection (such as by the C ABI's argument checks).
    pub fn record_error(&mut self, err: Error) {
        self.last_error = Some(err);
    }

    fn record(&mut self, err: Error) -> Error {
        self.last_error = Some(err.clone());
        err
    }

    fn fail(&mut self, err: Error) {
        self.state = State::Failed;
        self.outcome = Outcome::Failed;
        self.last_error = Some(err);
    }
}

fn plaintext_io_error(direction: &str, err: &io::Error) -> Error {
    if err.kind() == io::ErrorKind::WouldBlock {
        return Error::new(ErrorKind::WouldBlock, "the transport would block; call again when it is ready");
    }
    Error::io(&format!("{direction} plaintext data"), err)
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}
