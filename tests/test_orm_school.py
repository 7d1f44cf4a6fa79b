"""The seed README's school models and its four data examples, unchanged but for imports.

Also relations: on_delete behaviours enforced by SQLite, many-to-many through a model and
through an automatic join table, following foreign keys and their reverse.
"""

from __future__ import annotations

import datetime
import sys
import types

import pytest

from fluxon.database import connect, models as Models
from fluxon.database.ddl import schema_statements
from fluxon.database.manipulation import SqliteDatabase, where
from fluxon.database.models import collect_models
from fluxon.errors import IntegrityError, ValidationError


class User(Models.AuthorizedUser):
    username = Models.CharField(max_length=100, unique=True)
    password = Models.CharField(max_length=200)
    email = Models.CharField(max_length=130)
    user_creation_date = Models.DateTimeField(auto_now_add=True)


class Teacher(Models.Model):
    user = Models.OneToOneField(to_table=User, primary_key=True)
    name = Models.CharField(max_length=100)
    department = Models.CharField(max_length=50)


class Course(Models.Model):
    course_name = Models.CharField(max_length=100)
    course_code = Models.CharField(max_length=10)
    teacher = Models.ForeignKey(to_table=Teacher, on_delete=Models.CASCADE)


class Student(Models.Model):
    user = Models.OneToOneField(to_table=User, primary_key=True)
    name = Models.CharField(max_length=100)
    birth_date = Models.DateField()
    courses = Models.ManyToManyField(to_table=Course, through='Enrollment')


class Enrollment(Models.Model):
    student = Models.ForeignKey(to_table=Student, on_delete=Models.CASCADE)
    course = Models.ForeignKey(to_table=Course, on_delete=Models.CASCADE)
    date_enrolled = Models.DateField(auto_now_add=True)


# Relations beyond the seed: forward and self references by name, every on_delete.
class Category(Models.Model):
    name = Models.CharField(max_length=30)
    parent = Models.ForeignKey(to_table="self", on_delete=Models.SET_NULL, null=True)
    owner = Models.ForeignKey(to_table="Owner", on_delete=Models.PROTECT, null=True)
    tags = Models.ManyToManyField(to_table="Tag")


class Owner(Models.Model):
    name = Models.CharField(max_length=30)


class Pet(Models.Model):
    owner = Models.ForeignKey(to_table=Owner, related_name="pets")


class Tag(Models.Model):
    label = Models.CharField(max_length=30, unique=True)


class Fallback(Models.Model):
    category = Models.ForeignKey(to_table=Category, on_delete=Models.SET_DEFAULT, default=1)


@pytest.fixture
def db(db_url):
    """The school on both backends (SQLite file, PostgreSQL schema) through connect()."""
    database = connect(db_url, models=sys.modules[__name__])
    database.create_tables()
    yield database
    database.close_all()


def test_metadata_and_ddl_follow_the_models():
    assert [f.name for f in User._meta.fields] == ["id", "username", "password", "email",
                                                   "user_creation_date"]
    assert Teacher._meta.pk is Teacher.user and Teacher.user.column == "user_id"
    assert Course.teacher.rel_model is Teacher
    assert Category.owner.rel_model is Owner and Category.parent.rel_model is Category
    order = collect_models([Enrollment, Student, Course, Teacher, User])
    assert order.index(User) < order.index(Teacher) < order.index(Course) < order.index(Enrollment)
    assert schema_statements([User, Teacher]) == schema_statements([Teacher, User])
    tag_table = Category.tags.through_model
    assert tag_table._meta.table_name == "Category_tags" and tag_table in collect_models([Category])
    ddl = "\n".join(schema_statements([Course]))
    assert '"teacher_id" INTEGER NOT NULL REFERENCES "Teacher" ("user_id") ON DELETE CASCADE' in ddl
    assert 'ON DELETE RESTRICT' in "\n".join(schema_statements([Category]))


def test_the_seed_readmes_four_data_examples(db):
    # Inserting Data (returns the id of the inserted row)
    new_id = db.User.insert({
        db.User.username: "username",
        db.User.password: "password"
        , db.User.email: "old@example.com"})
    assert new_id == 1
    # Updating Data
    changed = db.update(User, {db.User.email: "newemail@example.com"},
                        db.where[db.User.username == "username"])
    assert changed == 1
    # Querying Data, with and without fetch
    number_of_results = 1
    users = db.User.Check(db.where[db.User.username == "username"], fetch=number_of_results)
    assert [u.email for u in users] == ["newemail@example.com"]
    assert users[0].check_password("password")
    db.User.insert({db.User.username: "other", db.User.password: "pw", db.User.email: "o@x"})
    assert len(db.User.Check(db.where[db.User.id > 0])) == 2
    assert isinstance(db.User.check(), list)
    # Deleting Data (the seed passes the model again, and the bare `where`)
    db.User.insert({db.User.username: "third", db.User.password: "pw", db.User.email: "t@x"})
    assert db.User.Delete(User, where[db.User.id == 3]) == 1
    assert db.User.delete(db.where[db.User.id == 2]) == 1
    assert [u.username for u in db.User.check()] == ["username"]


def test_school_relations_and_many_to_many_through_a_model(db):
    teacher_user = User.insert({"username": "t", "password": "x", "email": "t@x"})
    Teacher.insert({"user": teacher_user, "name": "Grace", "department": "CS"})
    course = Course.insert({"course_name": "Compilers", "course_code": "CS101",
                            "teacher": teacher_user})
    other = Course.insert({"course_name": "Logic", "course_code": "M2", "teacher": teacher_user})
    student_user = User.insert({"username": "s", "password": "x", "email": "s@x"})
    Student.insert({"user": student_user, "name": "Ada", "birth_date": datetime.date(2001, 2, 3)})
    ada = Student.get(Student.user == student_user)
    ada.courses.add(course, other)
    assert sorted(c.course_name for c in ada.courses.all()) == ["Compilers", "Logic"]
    assert Enrollment.get(Enrollment.course == course).date_enrolled == datetime.date.today()
    ada.courses.remove(other)
    assert [c.id for c in ada.courses] == [course] and len(ada.courses) == 1
    # follow a foreign key and its reverse
    compilers = Course.get(id=course)
    assert compilers.follow("teacher").name == "Grace"
    grace = Teacher.get(name="Grace")
    assert sorted(c.course_name for c in grace.related(Course)) == ["Compilers", "Logic"]
    # joins along foreign keys, chosen columns
    rows = (db.Course.select(Course.course_name, Teacher.name).join(Teacher)
            .where(Teacher.department == "CS").order_by(Course.course_name).dicts().all())
    assert rows == [{"course_name": "Compilers", "name": "Grace"},
                    {"course_name": "Logic", "name": "Grace"}]
    # CASCADE: deleting the teacher's user removes the teacher, its courses, the enrollments
    assert User.delete(User.id == teacher_user) == 1
    assert (Teacher.count(), Course.count(), Enrollment.count()) == (0, 0, 0)
    assert Student.count() == 1


def test_on_delete_protect_set_null_set_default_and_auto_join_table(db):
    owner = Owner.insert(name="o")
    root = Category.insert(name="root", owner=owner)
    child = Category.insert(name="child", parent=root)
    Pet.insert(owner=owner)
    assert [p.owner_id for p in Owner.get(id=owner).pets] == [owner]   # reverse accessor
    Pet.delete(all=True)
    # PROTECT: the owner cannot go while a category points at it
    with pytest.raises(IntegrityError) as info:
        Owner.delete(Owner.id == owner)
    assert "foreign key" in str(info.value).lower() and Owner.count() == 1
    # SET_DEFAULT: Fallback rows pointing at child go back to category 1 (root)
    Fallback.insert(category=child)
    # SET_NULL: deleting the parent leaves the child without a parent
    tags = [Tag.insert(label=t) for t in ("a", "b", "c")]
    child_row = Category.get(id=child)
    child_row.tags.add(*tags)
    child_row.tags.remove(tags[0])
    assert sorted(t.label for t in child_row.tags.all()) == ["b", "c"]
    child_row.tags.set([tags[2]])
    assert [t.label for t in child_row.tags] == ["c"]
    Category.update({Category.owner: None}, all=True)
    Category.delete(Category.id == child)
    assert Category.tags.through_model.count() == 0   # links cascade with the category
    assert Fallback.get().category_id == root         # SET_DEFAULT happened
    Fallback.delete(all=True)
    grandchild = Category.insert(name="grandchild", parent=root)
    Category.delete(Category.id == root)
    assert Category.get(id=grandchild).parent is None
    assert Owner.delete(Owner.id == owner) == 1


OTHER_SCHOOL = '''
from fluxon.database import connect, models as Models

class Student(Models.Model):
    courses = Models.ManyToManyField(to_table="Course", through="Enrollment")

class Course(Models.Model):
    title = Models.CharField(max_length=10)
    rival = Models.ForeignKey(to_table="test_orm_school.Course", null=True,
                              on_delete=Models.SET_NULL)

class Enrollment(Models.Model):
    student = Models.ForeignKey(to_table="Student")
    course = Models.ForeignKey(to_table="Course")
'''


def test_names_resolve_within_the_defining_module():
    module = types.ModuleType("orm_other_school")
    sys.modules[module.__name__] = module
    try:
        exec(compile(OTHER_SCHOOL, "orm_other_school.py", "exec"), module.__dict__)
        assert module.Student.courses.through_model is module.Enrollment
        assert module.Enrollment.course.rel_model is module.Course
        assert module.Course.rival.rel_model is Course          # dotted: another module
        assert Student.courses.through_model is Enrollment      # ours are untouched
    finally:
        del sys.modules[module.__name__]


def test_instances_stand_for_their_keys(db):
    uid = User.insert({"username": "k", "password": "x", "email": "k@x"})
    Teacher.insert({"user": uid, "name": "Kay", "department": "D"})
    kay = Teacher.get(name="Kay")
    Course.insert({Course.course_name: "A", Course.course_code: "A1", Course.teacher: kay})
    assert [c.course_name for c in Course.check(Course.teacher == kay)] == ["A"]
    assert Course.count(Course.teacher.in_([kay])) == 1
    with pytest.raises(ValidationError, match="expects a Teacher"):
        Course.insert({"course_name": "B", "course_code": "B1", "teacher": Course(id=None)})
