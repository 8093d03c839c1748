# wrk: the load generator of bench/ (not needed by tests, but CI and developers run both).
apt_install wrk
