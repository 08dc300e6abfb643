/*
 * notify.h - systemd's readiness protocol (sd_notify(3)), written out: one
 * datagram of "NAME=value" lines to the unix socket that NOTIFY_SOCKET
 * names (a path, or "@name" in the abstract namespace). No libsystemd; a
 * process not started by systemd has no NOTIFY_SOCKET and sends nothing.
 */
#ifndef SF_SRV_NOTIFY_H
#define SF_SRV_NOTIFY_H

/* sf__notify sends state ("READY=1\nSTATUS=...") to NOTIFY_SOCKET: 1 when
 * sent, 0 when there is no NOTIFY_SOCKET, -1 with errno when it could not
 * be sent (an address that is not a unix socket path: EAFNOSUPPORT). */
int sf__notify(const char *state);

#endif /* SF_SRV_NOTIFY_H */
