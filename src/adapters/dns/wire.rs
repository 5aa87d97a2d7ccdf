//! Talking DNS to one server with `hickory-net`: queries over UDP with TCP fallback on
//! truncation, and RFC 2136 updates over TCP, optionally TSIG-signed.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_net::client::{Client, ClientHandle};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::{DnsHandle, DnsMultiplexer, FirstAnswer};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType, TSigner};

use crate::engine::ports::{LookupFailure, TxtAnswer};

/// Signs requests (TSIG) before they leave.
pub(crate) type Signer = TSigner;

fn failure(server: SocketAddr, reason: impl ToString) -> LookupFailure {
    LookupFailure {
        server: server.to_string(),
        reason: reason.to_string(),
    }
}

type TokioClient = Client<TokioRuntimeProvider>;

async fn udp_client(server: SocketAddr, timeout: Duration) -> Result<TokioClient, LookupFailure> {
    let stream = UdpClientStream::builder(server, TokioRuntimeProvider::default())
        .with_timeout(Some(timeout))
        .build();
    let (client, background) = TokioClient::from_sender(stream);
    tokio::spawn(background);
    Ok(client)
}

async fn tcp_client(
    server: SocketAddr,
    timeout: Duration,
    signer: Option<Signer>,
) -> Result<TokioClient, LookupFailure> {
    let (stream, handle) =
        TcpClientStream::new(server, None, Some(timeout), TokioRuntimeProvider::default());
    let stream = stream.await.map_err(|e| failure(server, e))?;
    let mut multiplexer = DnsMultiplexer::new(stream, handle).with_timeout(timeout);
    if let Some(signer) = signer {
        multiplexer = multiplexer.with_signer(signer);
    }
    let (client, background) = TokioClient::from_sender(multiplexer);
    tokio::spawn(background);
    Ok(client)
}

/// Asks `server` for the TXT records at `name`: UDP first, TCP when the answer is truncated.
pub(crate) async fn query_txt(
    server: SocketAddr,
    name: &str,
    timeout: Duration,
) -> Result<TxtAnswer, LookupFailure> {
    let name = Name::from_ascii(name).map_err(|e| failure(server, format!("bad name: {e}")))?;
    let mut client = udp_client(server, timeout).await?;
    let mut response = client
        .query(name.clone(), DNSClass::IN, RecordType::TXT)
        .await
        .map_err(|e| failure(server, e))?;
    if response.metadata.truncation {
        let mut client = tcp_client(server, timeout, None).await?;
        response = client
            .query(name, DNSClass::IN, RecordType::TXT)
            .await
            .map_err(|e| failure(server, e))?;
    }
    txt_answer(server, &response)
}

/// Decodes one raw DNS response (wire format) from `server` into the TXT records it answers,
/// exactly as [`query_txt`] reads a reply. The `dns_txt` fuzz target drives it with
/// arbitrary bytes.
pub fn decode_txt_response(server: SocketAddr, bytes: &[u8]) -> Result<TxtAnswer, LookupFailure> {
    let message =
        Message::from_vec(bytes).map_err(|e| failure(server, format!("undecodable reply: {e}")))?;
    txt_answer(server, &message)
}

fn txt_answer(server: SocketAddr, response: &Message) -> Result<TxtAnswer, LookupFailure> {
    match response.metadata.response_code {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => return Ok(TxtAnswer::NoRecords),
        code => return Err(failure(server, format!("server answered {code}"))),
    }
    let records: Vec<String> = response
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|part| String::from_utf8_lossy(part).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect();
    Ok(if records.is_empty() {
        TxtAnswer::NoRecords
    } else {
        TxtAnswer::Records(records)
    })
}

/// Sends an RFC 2136 update over TCP and checks the server accepted it.
pub(crate) async fn send_update(
    server: SocketAddr,
    update: Message,
    timeout: Duration,
    signer: Option<Signer>,
) -> Result<(), LookupFailure> {
    let client = tcp_client(server, timeout, signer).await?;
    let response = client
        .send(update.into())
        .first_answer()
        .await
        .map_err(|e| failure(server, e))?;
    match response.metadata.response_code {
        ResponseCode::NoError => Ok(()),
        code => Err(failure(
            server,
            format!(
                "update refused: {code} (check the zone name, the TSIG key and the server's update ACL)"
            ),
        )),
    }
}
