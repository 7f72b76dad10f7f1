"""The local stack: processes fraudops starts and stops on one machine."""
