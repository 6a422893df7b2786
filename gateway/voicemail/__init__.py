"""Voicemail: durable spool and mailer."""
