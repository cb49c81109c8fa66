package dev.ext4j.nio;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import java.nio.file.AccessDeniedException;
import java.nio.file.DirectoryNotEmptyException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileSystemException;
import java.nio.file.FileSystemLoopException;
import java.nio.file.NoSuchFileException;
import java.nio.file.NotDirectoryException;
import java.nio.file.NotLinkException;

/**
 * The one place where the core's errors become the exceptions {@code java.nio.file} programs
 * catch, as {@code fuse/Errors} is for FUSE. Corruption (EUCLEAN, EBADMSG) is recorded in the
 * superblock first, as a mount does; its message names the inode or block.
 */
final class NioErrors {
    private NioErrors() {
    }

    /**
     * The NIO exception for {@code e}, met on {@code file} (and {@code other}, the second path of a
     * copy, move or link, or null).
     */
    static FileSystemException translate(Ext4Exception e, String file, String other) {
        String reason = e.errno() + ": " + e.getMessage();
        FileSystemException x = switch (e.errno()) {
            case ENOENT -> new NoSuchFileException(file, other, reason);
            case EEXIST -> new FileAlreadyExistsException(file, other, reason);
            case ENOTEMPTY -> new DirectoryNotEmptyException(file);
            case ENOTDIR -> new NotDirectoryException(file);
            case EACCES, EPERM -> new AccessDeniedException(file, other, reason);
            case ELOOP -> new FileSystemLoopException(file);
            default -> new FileSystemException(file, other, reason);
        };
        x.initCause(e);
        return x;
    }

    /** {@link #translate} for an inode that is not a symbolic link (readlink's EINVAL). */
    static NotLinkException notLink(String file) {
        return new NotLinkException(file, null, Errno.EINVAL + ": not a symbolic link");
    }
}
