package dev.ext4j.nio;

import dev.ext4j.Ext4Exception;
import dev.ext4j.fs.Permissions;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.attribute.UserDefinedFileAttributeView;
import java.util.ArrayList;
import java.util.List;

/** The {@code user.} extended attributes of an inode, named without the prefix, as the JDK's view on Linux. */
final class UserXattrView implements UserDefinedFileAttributeView {
    private static final String PREFIX = "user.";
    private final ImageFileSystem fs;
    private final ImagePath path;
    private final boolean follow;

    UserXattrView(ImageFileSystem fs, ImagePath path, boolean follow) {
        this.fs = fs;
        this.path = path;
        this.follow = follow;
    }

    @Override
    public String name() {
        return "user";
    }

    /** The core's xattr name: one char per byte of the UTF-8 name. */
    private static String coreName(String name) {
        return new String((PREFIX + name).getBytes(StandardCharsets.UTF_8), StandardCharsets.ISO_8859_1);
    }

    private long inode(int mask) throws Ext4Exception {
        long ino = fs.inode(path, follow);
        fs.access(ino, mask);
        return ino;
    }

    @Override
    public List<String> list() throws IOException {
        return fs.io("listxattr", path, null, () -> {
            List<String> out = new ArrayList<>();
            for (String n : fs.core.listXattrs(inode(Permissions.R_OK))) {
                if (n.startsWith(PREFIX)) {
                    out.add(new String(n.substring(PREFIX.length()).getBytes(StandardCharsets.ISO_8859_1), StandardCharsets.UTF_8));
                }
            }
            return out;
        });
    }

    private byte[] value(String name) throws IOException {
        return fs.io("getxattr", path, null, () -> fs.core.getXattr(inode(Permissions.R_OK), coreName(name)));
    }

    @Override
    public int size(String name) throws IOException {
        return value(name).length;
    }

    @Override
    public int read(String name, ByteBuffer dst) throws IOException {
        byte[] v = value(name);
        if (dst.remaining() < v.length) {
            throw new IOException("attribute user." + name + " has " + v.length + " bytes, the buffer room for " + dst.remaining());
        }
        dst.put(v);
        return v.length;
    }

    @Override
    public int write(String name, ByteBuffer src) throws IOException {
        fs.requireWritable();
        byte[] v = new byte[src.remaining()];
        src.get(v);
        fs.io("setxattr", path, null, () -> {
            fs.core.setXattr(inode(Permissions.W_OK), coreName(name), v, 0);
            return null;
        });
        return v.length;
    }

    @Override
    public void delete(String name) throws IOException {
        fs.requireWritable();
        fs.io("removexattr", path, null, () -> {
            fs.core.removeXattr(inode(Permissions.W_OK), coreName(name));
            return null;
        });
    }

}
