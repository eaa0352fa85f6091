# Shortcuts; the README's two commands are scripts/run.sh and scripts/test.sh
# (they need no make on a fresh machine).
#
# Installing on a systemd distribution (see README.md, "Install"):
#   cargo build --release && sudo make install
# `make install DESTDIR=/some/root PREFIX=/usr` lays out a root filesystem or
# a package instead; `make uninstall` with the same variables removes exactly
# what install laid out.

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
# systemd and systemd-sysusers read /usr/lib and /usr/local/lib alike.
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
SYSTEMDUSERUNITDIR ?= $(PREFIX)/lib/systemd/user
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
# The system bus looks for activation files under /usr/local/share too, but
# for policies only in /usr/share/dbus-1/system.d and /etc/dbus-1/system.d.
DBUSSERVICEDIR ?= $(PREFIX)/share/dbus-1/system-services
DBUSPOLICYDIR ?= /usr/share/dbus-1/system.d
# What leco's notifications name as their desktop entry.
APPLICATIONSDIR ?= $(PREFIX)/share/applications
# The service reads /etc/leco/config.kdl, whatever the prefix.
SYSCONFDIR ?= /etc

CARGO ?= cargo
CARGO_TARGET_DIR ?= target
BIN := $(CARGO_TARGET_DIR)/release

# Only a real install onto the running system touches the running system.
LIVE := $(if $(DESTDIR),,$(shell [ -d /run/systemd/system ] && echo yes))

.PHONY: run test bench build install uninstall
run:
	./scripts/run.sh
test:
	./scripts/test.sh
bench:
	./scripts/bench.sh

build:
	$(CARGO) build --release --locked -p leco-service -p leco-overlay -p leco-notify

# Built only when missing, so that `sudo make install` after
# `cargo build --release` needs no toolchain as root.
$(BIN)/leco-service:
	$(CARGO) build --release --locked -p leco-service

install: $(BIN)/leco-service
	install -Dm755 $(BIN)/leco-service $(DESTDIR)$(BINDIR)/leco-service
	if [ -x $(BIN)/leco-overlay ]; then \
	  install -Dm755 $(BIN)/leco-overlay $(DESTDIR)$(BINDIR)/leco-overlay; fi
	if [ -x $(BIN)/leco-notify ]; then \
	  install -Dm755 $(BIN)/leco-notify $(DESTDIR)$(BINDIR)/leco-notify; fi
	install -d $(DESTDIR)$(SYSTEMDUNITDIR)
	sed 's|@bindir@|$(BINDIR)|g' systemd/leco.service.in >$(DESTDIR)$(SYSTEMDUNITDIR)/leco.service
	chmod 644 $(DESTDIR)$(SYSTEMDUNITDIR)/leco.service
	if [ -f systemd/leco-overlay.service ]; then \
	  install -d $(DESTDIR)$(SYSTEMDUSERUNITDIR) && \
	  sed 's|@bindir@|$(BINDIR)|g' systemd/leco-overlay.service \
	    >$(DESTDIR)$(SYSTEMDUSERUNITDIR)/leco-overlay.service && \
	  chmod 644 $(DESTDIR)$(SYSTEMDUSERUNITDIR)/leco-overlay.service; fi
	install -Dm644 systemd/leco-notify.service $(DESTDIR)$(SYSTEMDUSERUNITDIR)/leco-notify.service
	install -Dm644 desktop/leco.desktop $(DESTDIR)$(APPLICATIONSDIR)/leco.desktop
	install -Dm644 systemd/org.leco.Overseer1.service $(DESTDIR)$(DBUSSERVICEDIR)/org.leco.Overseer1.service
	install -Dm644 dbus-policy/org.leco.Overseer1.conf $(DESTDIR)$(DBUSPOLICYDIR)/org.leco.Overseer1.conf
	install -Dm644 systemd/leco.sysusers $(DESTDIR)$(SYSUSERSDIR)/leco.conf
	@# An existing configuration is the administrator's: never overwritten.
	if [ -e $(DESTDIR)$(SYSCONFDIR)/leco/config.kdl ]; then \
	  echo "keeping $(DESTDIR)$(SYSCONFDIR)/leco/config.kdl (the default is config.kdl here)"; \
	else install -Dm644 config.kdl $(DESTDIR)$(SYSCONFDIR)/leco/config.kdl; fi
ifeq ($(LIVE),yes)
	@# The user must exist before the bus reads the policy that names it.
	systemd-sysusers $(SYSUSERSDIR)/leco.conf
	systemctl daemon-reload
	busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig
	@echo "installed: \`systemctl enable --now leco\` starts it at boot (else the first client starts it);"
	@echo "readers join group leco: \`usermod -aG leco USER\`, then log out and back in"
else
	@echo "installed into $(DESTDIR)$(PREFIX); on the target system run: systemd-sysusers;" \
	  "systemctl daemon-reload; busctl call org.freedesktop.DBus /org/freedesktop/DBus" \
	  "org.freedesktop.DBus ReloadConfig"
endif

# The user leco stays (sysusers users are never removed: files may still be
# owned by it); the configuration goes only if it is still the default.
uninstall:
ifeq ($(LIVE),yes)
	-systemctl disable --now leco.service
endif
	rm -f $(DESTDIR)$(BINDIR)/leco-service $(DESTDIR)$(BINDIR)/leco-overlay $(DESTDIR)$(BINDIR)/leco-notify
	rm -f $(DESTDIR)$(SYSTEMDUNITDIR)/leco.service
	rm -f $(DESTDIR)$(SYSTEMDUSERUNITDIR)/leco-overlay.service
	rm -f $(DESTDIR)$(SYSTEMDUSERUNITDIR)/leco-notify.service
	rm -f $(DESTDIR)$(APPLICATIONSDIR)/leco.desktop
	rm -f $(DESTDIR)$(DBUSSERVICEDIR)/org.leco.Overseer1.service
	rm -f $(DESTDIR)$(DBUSPOLICYDIR)/org.leco.Overseer1.conf
	rm -f $(DESTDIR)$(SYSUSERSDIR)/leco.conf
	if cmp -s config.kdl $(DESTDIR)$(SYSCONFDIR)/leco/config.kdl; then \
	  rm -f $(DESTDIR)$(SYSCONFDIR)/leco/config.kdl; \
	  rmdir --ignore-fail-on-non-empty $(DESTDIR)$(SYSCONFDIR)/leco; \
	elif [ -e $(DESTDIR)$(SYSCONFDIR)/leco/config.kdl ]; then \
	  echo "keeping $(DESTDIR)$(SYSCONFDIR)/leco/config.kdl (changed from the default)"; fi
ifeq ($(LIVE),yes)
	systemctl daemon-reload
	busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig
endif
