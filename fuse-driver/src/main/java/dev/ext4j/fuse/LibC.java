package dev.ext4j.fuse;

import jnr.ffi.LibraryLoader;
import jnr.ffi.Pointer;
import jnr.ffi.annotations.In;
import jnr.ffi.annotations.Out;
import jnr.ffi.types.size_t;
import jnr.ffi.types.ssize_t;
import jnr.ffi.types.u_int64_t;

/**
 * The libc calls the transports make themselves: {@link FuseLoop}'s non-blocking device and poll,
 * and the descriptor juggling with which {@link LibFuse3Session} rewrites libfuse's INIT reply.
 */
public interface LibC {
    /** Loaded once; the JVM has libc mapped already. */
    LibC C = LibraryLoader.create(LibC.class).failImmediately().load("c");

    int fcntl(int fd, int cmd, int arg);

    int poll(Pointer fds, @u_int64_t long nfds, int timeoutMillis);

    int dup(int fd);

    int dup2(int fd, int to);

    int pipe(@Out int[] fds);

    int close(int fd);

    @ssize_t long read(int fd, @Out byte[] buf, @size_t long count);

    @ssize_t long write(int fd, @In byte[] buf, @size_t long count);

    void free(Pointer p);
}
