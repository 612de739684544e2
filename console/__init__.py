"""The command line and what operators read: status, progress, reasons, one batch, prune, dry run, report, verify."""
