"""What every part of ls_keras shares: settings, errors, input checks, hardware, workdirs, plots."""
