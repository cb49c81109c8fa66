package dev.ext4j.fs;

import java.util.Locale;

/**
 * The errors= behaviour (s_errors): what ext4j does after it found the filesystem corrupt, once the
 * error is recorded in the superblock.
 */
public enum ErrorPolicy {
    /** Record the error and go on (EXT4_ERRORS_CONTINUE). */
    CONTINUE(1),
    /** Record the error and refuse every later change with EROFS (EXT4_ERRORS_RO). */
    REMOUNT_RO(2),
    /** Record the error, write the superblock and stop serving the mount (EXT4_ERRORS_PANIC). */
    PANIC(3);

    private final int onDisk;

    ErrorPolicy(int onDisk) {
        this.onDisk = onDisk;
    }

    /** The superblock's s_errors value; unknown values mean continue, as the kernel's default. */
    public static ErrorPolicy fromSuperblock(int value) {
        for (ErrorPolicy p : values()) {
            if (p.onDisk == value) {
                return p;
            }
        }
        return CONTINUE;
    }

    /** The mount option's value: continue, remount-ro or panic. */
    public static ErrorPolicy parse(String option) {
        return switch (option.toLowerCase(Locale.ROOT)) {
            case "continue" -> CONTINUE;
            case "remount-ro" -> REMOUNT_RO;
            case "panic" -> PANIC;
            default -> throw new IllegalArgumentException("errors=" + option + ": expected continue, remount-ro or panic");
        };
    }
}
