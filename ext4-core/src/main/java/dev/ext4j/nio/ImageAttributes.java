package dev.ext4j.nio;

import dev.ext4j.fs.Ext4FileSystem;
import dev.ext4j.fs.FileAttributes;
import dev.ext4j.format.Inode;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.attribute.FileTime;
import java.nio.file.attribute.GroupPrincipal;
import java.nio.file.attribute.PosixFileAttributeView;
import java.nio.file.attribute.PosixFileAttributes;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.UserPrincipal;
import java.util.EnumSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;

/**
 * What an inode's attributes look like through {@code java.nio.file}: {@link PosixFileAttributes}
 * over the core's {@link FileAttributes}, the views that read and change them, and the
 * string-named attributes of the views basic, posix, owner, unix (the JDK's names: ino, nlink,
 * uid, gid, rdev, ctime, mode...) and user (xattrs in the {@code user.} namespace).
 */
final class ImageAttributes {
    private static final PosixFilePermission[] BITS = {
            PosixFilePermission.OTHERS_EXECUTE, PosixFilePermission.OTHERS_WRITE, PosixFilePermission.OTHERS_READ,
            PosixFilePermission.GROUP_EXECUTE, PosixFilePermission.GROUP_WRITE, PosixFilePermission.GROUP_READ,
            PosixFilePermission.OWNER_EXECUTE, PosixFilePermission.OWNER_WRITE, PosixFilePermission.OWNER_READ};

    private ImageAttributes() {
    }

    static int toMode(Set<PosixFilePermission> perms) {
        int mode = 0;
        for (int i = 0; i < BITS.length; i++) {
            if (perms.contains(BITS[i])) {
                mode |= 1 << i;
            }
        }
        return mode;
    }

    static Set<PosixFilePermission> toPermissions(int mode) {
        Set<PosixFilePermission> s = EnumSet.noneOf(PosixFilePermission.class);
        for (int i = 0; i < BITS.length; i++) {
            if ((mode & (1 << i)) != 0) {
                s.add(BITS[i]);
            }
        }
        return s;
    }

    static FileTime time(long seconds, int nanos) {
        return FileTime.from(seconds * 1_000_000_000L + nanos, TimeUnit.NANOSECONDS);
    }

    static Ext4FileSystem.Time time(FileTime t) {
        if (t == null) {
            return null;
        }
        java.time.Instant i = t.toInstant();
        return new Ext4FileSystem.Time(i.getEpochSecond(), i.getNano());
    }

    /** One inode's attributes, as read. */
    record Attributes(FileAttributes a) implements PosixFileAttributes {
        private int type() {
            return a.mode() & Inode.S_IFMT;
        }

        @Override
        public FileTime lastModifiedTime() {
            return time(a.mtimeSeconds(), a.mtimeNanos());
        }

        @Override
        public FileTime lastAccessTime() {
            return time(a.atimeSeconds(), a.atimeNanos());
        }

        /** The inode's crtime where it has one (large inodes), else its mtime, as the JDK without statx. */
        @Override
        public FileTime creationTime() {
            return a.crtimeSeconds() != 0 || a.crtimeNanos() != 0 ? time(a.crtimeSeconds(), a.crtimeNanos()) : lastModifiedTime();
        }

        @Override
        public boolean isRegularFile() {
            return type() == Inode.S_IFREG;
        }

        @Override
        public boolean isDirectory() {
            return type() == Inode.S_IFDIR;
        }

        @Override
        public boolean isSymbolicLink() {
            return type() == Inode.S_IFLNK;
        }

        @Override
        public boolean isOther() {
            return !isRegularFile() && !isDirectory() && !isSymbolicLink();
        }

        @Override
        public long size() {
            return a.size();
        }

        /** The inode number. */
        @Override
        public Long fileKey() {
            return a.ino();
        }

        @Override
        public UserPrincipal owner() {
            return Principals.SERVICE.user(a.uid());
        }

        @Override
        public GroupPrincipal group() {
            return Principals.SERVICE.group(a.gid());
        }

        @Override
        public Set<PosixFilePermission> permissions() {
            return toPermissions(a.mode());
        }
    }

    /** The basic, owner and posix views of one path (one class: each is a subset of the next). */
    static final class View implements PosixFileAttributeView {
        private final ImageFileSystem fs;
        private final ImagePath path;
        private final boolean follow;
        private final String name;

        View(ImageFileSystem fs, ImagePath path, boolean follow, String name) {
            this.fs = fs;
            this.path = path;
            this.follow = follow;
            this.name = name;
        }

        @Override
        public String name() {
            return name;
        }

        @Override
        public Attributes readAttributes() throws IOException {
            return new Attributes(fs.stat(path, follow));
        }

        @Override
        public void setTimes(FileTime lastModifiedTime, FileTime lastAccessTime, FileTime createTime) throws IOException {
            if (lastModifiedTime != null || lastAccessTime != null) {
                fs.setAttributes(path, follow, null, null, null, time(lastAccessTime), time(lastModifiedTime));
            }
        }

        @Override
        public void setPermissions(Set<PosixFilePermission> perms) throws IOException {
            setMode(toMode(perms), 0777);
        }

        /** Sets the bits of {@code mask} in the mode to those of {@code mode}. */
        void setMode(int mode, int mask) throws IOException {
            int old = fs.stat(path, follow).mode();
            fs.setAttributes(path, follow, (old & 07777 & ~mask) | (mode & mask), null, null, null, null);
        }

        @Override
        public void setOwner(UserPrincipal owner) throws IOException {
            fs.setAttributes(path, follow, null, Principals.uidOf(owner), null, null, null);
        }

        @Override
        public void setGroup(GroupPrincipal group) throws IOException {
            fs.setAttributes(path, follow, null, null, Principals.gidOf(group), null, null);
        }

        @Override
        public UserPrincipal getOwner() throws IOException {
            return readAttributes().owner();
        }
    }

    private static final List<String> BASIC = List.of("lastModifiedTime", "lastAccessTime", "creationTime", "size",
            "isRegularFile", "isDirectory", "isSymbolicLink", "isOther", "fileKey");
    private static final List<String> UNIX = List.of("mode", "ino", "dev", "rdev", "nlink", "uid", "gid", "ctime");

    /** Files.readAttributes(path, "view:a,b" or "view:*"). */
    static Map<String, Object> read(ImageFileSystem fs, ImagePath path, boolean follow, String spec) throws IOException {
        int colon = spec.indexOf(':');
        String view = colon < 0 ? "basic" : spec.substring(0, colon);
        String[] wanted = (colon < 0 ? spec : spec.substring(colon + 1)).split(",");
        Map<String, Object> out = new LinkedHashMap<>();
        if (view.equals("user")) {
            UserXattrView x = new UserXattrView(fs, path, follow);
            List<String> names = List.of(wanted).contains("*") ? x.list() : List.of(wanted);
            for (String n : names) {
                ByteBuffer b = ByteBuffer.allocate(x.size(n));
                x.read(n, b);
                out.put(n, b.array());
            }
            return out;
        }
        Attributes a = new Attributes(fs.stat(path, follow));
        for (String w : wanted) {
            boolean all = w.equals("*");
            for (String n : names(view)) {
                if (all || n.equals(w)) {
                    out.put(n, value(a, n));
                }
            }
            if (!all && !out.containsKey(w)) {
                throw new IllegalArgumentException("'" + w + "' is not an attribute of view '" + view + "'");
            }
        }
        return out;
    }

    private static List<String> names(String view) {
        return switch (view) {
            case "basic" -> BASIC;
            case "owner" -> List.of("owner");
            case "posix" -> concat(BASIC, List.of("owner", "group", "permissions"));
            case "unix" -> concat(concat(BASIC, List.of("owner", "group", "permissions")), UNIX);
            default -> throw new UnsupportedOperationException("view '" + view + "' is not supported");
        };
    }

    private static List<String> concat(List<String> a, List<String> b) {
        List<String> l = new java.util.ArrayList<>(a);
        l.addAll(b);
        return l;
    }

    private static Object value(Attributes at, String name) {
        FileAttributes a = at.a();
        return switch (name) {
            case "lastModifiedTime" -> at.lastModifiedTime();
            case "lastAccessTime" -> at.lastAccessTime();
            case "creationTime" -> at.creationTime();
            case "size" -> at.size();
            case "isRegularFile" -> at.isRegularFile();
            case "isDirectory" -> at.isDirectory();
            case "isSymbolicLink" -> at.isSymbolicLink();
            case "isOther" -> at.isOther();
            case "fileKey" -> at.fileKey();
            case "owner" -> at.owner();
            case "group" -> at.group();
            case "permissions" -> at.permissions();
            case "mode" -> a.mode();
            case "ino" -> a.ino();
            case "dev" -> 0L;
            case "rdev" -> makedev(a.rdevMajor(), a.rdevMinor());
            case "nlink" -> (int) a.nlink();
            case "uid" -> (int) a.uid();
            case "gid" -> (int) a.gid();
            case "ctime" -> time(a.ctimeSeconds(), a.ctimeNanos());
            default -> throw new IllegalArgumentException(name);
        };
    }

    /** glibc's makedev(). */
    static long makedev(long major, long minor) {
        return ((major & 0xFFFFF000L) << 32) | ((major & 0xFFFL) << 8) | ((minor & 0xFFFFFF00L) << 12) | (minor & 0xFFL);
    }

    /** Files.setAttribute(path, "view:name", value). */
    @SuppressWarnings("unchecked")
    static void set(ImageFileSystem fs, ImagePath path, boolean follow, String spec, Object value) throws IOException {
        int colon = spec.indexOf(':');
        String view = colon < 0 ? "basic" : spec.substring(0, colon);
        String name = spec.substring(colon + 1);
        if (view.equals("user")) {
            new UserXattrView(fs, path, follow).write(name, ByteBuffer.wrap((byte[]) value));
            return;
        }
        names(view); // an unknown view is UnsupportedOperationException
        View v = new View(fs, path, follow, view);
        switch (name) {
            case "lastModifiedTime" -> v.setTimes((FileTime) value, null, null);
            case "lastAccessTime" -> v.setTimes(null, (FileTime) value, null);
            case "creationTime" -> v.setTimes(null, null, (FileTime) value);
            case "owner" -> v.setOwner((UserPrincipal) value);
            case "group" -> v.setGroup((GroupPrincipal) value);
            case "permissions" -> v.setPermissions((Set<PosixFilePermission>) value);
            case "mode" -> v.setMode(((Number) value).intValue(), 07777);
            case "uid" -> fs.setAttributes(path, follow, null, ((Number) value).longValue() & 0xFFFFFFFFL, null, null, null);
            case "gid" -> fs.setAttributes(path, follow, null, null, ((Number) value).longValue() & 0xFFFFFFFFL, null, null);
            default -> throw new IllegalArgumentException("'" + name + "' of view '" + view + "' cannot be set");
        }
    }
}
