"""Recurring runs on the control host: cron or systemd timers, cron-to-OnCalendar, and the scheduled run itself."""
