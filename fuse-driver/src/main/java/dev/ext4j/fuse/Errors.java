package dev.ext4j.fuse;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import java.lang.System.Logger.Level;
import java.util.function.BiConsumer;
import java.util.function.LongSupplier;

/**
 * The one place where a callback's failure becomes the {@code -errno} a FUSE callback returns, as
 * fuse2fs's translate_error(): an {@link Ext4Exception} gives its errno, logged at a level that
 * suits it and rate limited as ext4's messages are; corruption (EUCLEAN, EBADMSG) is first recorded
 * in the superblock (ext4_error()); anything else is a bug, which costs that request EIO and a log
 * line with its stack trace instead of a dead mount.
 */
final class Errors {
    private static final System.Logger LOG = System.getLogger("ext4j");
    /** As ext4's messages: 10 in 5 s. */
    static final long LOG_INTERVAL_NANOS = 5_000_000_000L;
    static final int LOG_BURST = 10;

    /** A callback body that may fail with the core's exception; returns the callback's result. */
    @FunctionalInterface
    interface Op {
        int run() throws Ext4Exception;
    }

    private final BiConsumer<String, Ext4Exception> recordCorruption;
    private final LongSupplier nanoClock;
    /** Errors (corruption, I/O) and the rest (ENOSPC, EEXIST...) are limited apart. */
    private final LogLimit errorLogLimit = new LogLimit(LOG_INTERVAL_NANOS, LOG_BURST);
    private final LogLimit infoLogLimit = new LogLimit(LOG_INTERVAL_NANOS, LOG_BURST);

    /**
     * @param recordCorruption records a corruption error in the filesystem (op, error); called
     *                         before the errno is returned
     * @param nanoClock        the clock of the log rate limit, {@code System::nanoTime}
     */
    Errors(BiConsumer<String, Ext4Exception> recordCorruption, LongSupplier nanoClock) {
        this.recordCorruption = recordCorruption;
        this.nanoClock = nanoClock;
    }

    /** Runs {@code body} for callback {@code op} on {@code path}: its result, or {@code -errno} when it fails. */
    int call(String op, String path, Op body) {
        try {
            return body.run();
        } catch (Ext4Exception e) {
            return reply(op, path, e);
        } catch (RuntimeException | StackOverflowError e) {
            return unexpected(op, path, e);
        }
    }

    /** {@code -errno} for a core error, which is recorded if it is corruption and logged within the rate limit. */
    int reply(String op, String path, Ext4Exception e) {
        Errno errno = e.errno();
        if (errno == Errno.EUCLEAN || errno == Errno.EBADMSG) {
            recordCorruption.accept(op, e);
        }
        Level level = level(errno);
        int dropped = level == Level.DEBUG ? 0 : (level == Level.ERROR ? errorLogLimit : infoLogLimit).admit(nanoClock.getAsLong());
        if (dropped > 0) {
            LOG.log(level, "{0} similar messages suppressed", dropped);
        }
        if (dropped >= 0) {
            LOG.log(level, "{0} {1}: {2}", op, path, e);
        }
        return -errno.value();
    }

    /** EIO for a failure that is a bug, logged with its stack trace. */
    int unexpected(String op, String path, Throwable e) {
        LOG.log(Level.ERROR, op + " " + path + ": unexpected failure, returning EIO", e);
        return -Errno.EIO.value();
    }

    /**
     * The log level of a core error: ERROR for corruption and I/O errors, DEBUG for the answers
     * programs ask for all the time (a missing name or xattr, a permission refused), INFO for the
     * rest.
     */
    static Level level(Errno errno) {
        return switch (errno) {
            case EUCLEAN, EBADMSG, EIO -> Level.ERROR;
            case ENOENT, ENODATA, ERANGE, ENOTDIR, EISDIR, EROFS, EACCES, EPERM, EOPNOTSUPP, ENAMETOOLONG, ENOTTY -> Level.DEBUG;
            default -> Level.INFO;
        };
    }
}
