"""The gateway as a service of the machine: logging, systemd notify, refused sources
(for fail2ban), and the firewall written at install time."""
