/*
 * pjproject build configuration for sip-failover (pjproject 2.15.1).
 *
 * deploy/build-pjsua2.sh copies this file to pjlib/include/pj/config_site.h
 * before it builds. The gateway reads the limits that result at start-up
 * (sip-failover doctor and status show them); nothing in the gateway assumes
 * these numbers.
 *
 * Asserts stay compiled in (NDEBUG is not defined), as in the PyPI wheel:
 * every trap in docs/limits.md was measured with them, and an abort() that
 * systemd restarts is safer than pjsip going on with a state it has just found
 * to be wrong.
 */

/* Call slots, inbound and outbound legs together (the wheel has 4). */
#define PJSUA_MAX_CALLS             32

/* The trunk account and the direct account for SIP URIs; room to spare. */
#define PJSUA_MAX_ACC               8

/* Conference bridge: a port per leg, a SIT tap per ringing leg, players and
 * recorders of the answering machine, and the null sound device. */
#define PJSUA_MAX_CONF_PORTS        254
#define PJSUA_MAX_PLAYERS           64
#define PJSUA_MAX_RECORDERS         64

/* Socket handles of the I/O queue (the wheel has 64 in a select() queue).
 * Every leg holds an RTP and an RTCP socket, every TCP/TLS connection one.
 * The epoll queue itself is chosen by ./configure --enable-epoll: select()
 * cannot go past FD_SETSIZE (1024 with glibc). */
#define PJ_IOQUEUE_MAX_HANDLES      1024

/* No video: the gateway carries audio only, and this keeps the build short
 * on a Raspberry Pi. */
#define PJMEDIA_HAS_VIDEO           0
