//! Which TCP ports listen inside another network namespace, read from the host through
//! `/proc/<pid>/net/tcp{,6}`: no process is started in the container to probe them.

/// TCP ports in LISTEN state in the network namespace of `pid`.
pub fn listening_tcp_ports(pid: u32) -> Vec<u16> {
    let mut ports = Vec::new();
    for file in ["tcp", "tcp6"] {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")) {
            ports.extend(parse_listening(&text));
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// Parses the kernel's `/proc/net/tcp` table: `sl local_address rem_address st ...`.
fn parse_listening(table: &str) -> Vec<u16> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let local = cols.nth(1)?;
            let state = cols.nth(1)?;
            if state != "0A" {
                return None;
            }
            let port = local.rsplit_once(':')?.1;
            u16::from_str_radix(port, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_listening_ports_only() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 00000000:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n\
           1: 0100007F:0050 0100007F:A2C4 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0\n";
        assert_eq!(parse_listening(table), vec![5432]);
    }

    #[test]
    fn sees_a_listener_of_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert!(listening_tcp_ports(std::process::id()).contains(&port));
    }
}
